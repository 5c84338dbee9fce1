"""The web console under ``/console``: server-rendered pages (Jinja2 templates and static
files in ``modelmart/console/``), a little JavaScript, nothing from other hosts.

Every page and endpoint except the sign-in page and the static files needs a session
(``console_auth.py``); each route says who may use it: the operator, a customer, or both
(a customer's requests are pinned to that customer in every query). State-changing
requests need the session's CSRF token and a same-origin Origin or Referer.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import parse_qs, quote

import orjson

from modelmart.core.errors import GatewayError, NotFound, PermissionDenied

from .console_auth import Sessions, Signed, clear_cookie, same_origin, set_cookie
from .console_render import Templates
from .http import Receive, Scope, Send, read_body

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.console")

ROOT = Path(__file__).resolve().parent.parent / "console"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8"}
# Scripts and styles only from our own files: an injected <script> or inline handler
# would not run. Charts are inline SVG (presentation attributes, no style attributes).
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
     b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
     b"base-uri 'none'; object-src 'none'"),
    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
FORM_LIMIT = 1 << 16


@dataclass(slots=True)
class Request:
    scope: Scope
    receive: Receive
    path: str  # after /console
    query: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)  # from the route's pattern
    signed: Signed | None = None
    _form: dict[str, list[str]] | None = None

    @property
    def method(self) -> str:
        return self.scope["method"]

    async def form(self) -> dict[str, list[str]]:
        if self._form is None:
            body = await read_body(self.scope, self.receive, FORM_LIMIT)
            self._form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return self._form

    async def field(self, name: str) -> str:
        values = (await self.form()).get(name)
        return values[-1].strip() if values else ""

    async def json(self) -> Any:
        body = await read_body(self.scope, self.receive, FORM_LIMIT)
        try:
            return orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise GatewayError("The body is not valid JSON.", status=400) from None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    cache: bool = False

    async def send(self, send: Send) -> None:
        headers = [(b"content-type", self.content_type.encode()), *SECURITY_HEADERS,
                   *self.headers]
        headers.append((b"cache-control",
                        b"public, max-age=3600" if self.cache else b"no-store"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def redirect(location: str, *headers: tuple[bytes, bytes]) -> Response:
    return Response(303, b"", headers=[(b"location", location.encode()), *headers])


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(data, default=str), "application/json")


Handler = Callable[[Request], Awaitable[Response]]
OPERATOR, CUSTOMER, BOTH, ANYONE = "operator", "customer", "both", "anyone"


class Console:
    def __init__(self, app: "App") -> None:
        from . import console_customer, console_operator

        self.app = app
        self.sessions = Sessions(app)
        self.templates = Templates(ROOT / "templates")
        self.routes: list[tuple[str, re.Pattern, str, Handler]] = []
        self.route("GET", "/login", ANYONE, self._login_page)
        self.route("POST", "/logout", BOTH, self._logout)
        self.route("GET", "/", BOTH, self._home)
        console_operator.register(self)
        console_customer.register(self)

    def route(self, method: str, pattern: str, who: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + "$"), who, handler))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len("/console"):] or "/"
        req = Request(scope, receive, path, _query(scope))
        try:
            response = await self._handle(req)
        except GatewayError as err:
            response = self.error(req, err.status, err.message)
        except Exception:
            log.exception("console: %s %s failed", req.method, scope["path"])
            response = self.error(req, 500, "Something went wrong on our side; it is logged.")
        await response.send(send)

    async def _handle(self, req: Request) -> Response:
        if req.path.startswith("/static/") and req.method in ("GET", "HEAD"):
            return _static(req.path[len("/static/"):])
        if req.path == "/login" and req.method == "POST":
            return await self._login(req)
        match = self._match(req)
        if match is None:
            raise NotFound(f"No console page {req.method} /console{req.path}.")
        who, handler, params = match
        req.params = params
        if who != ANYONE:
            req.signed = await self.sessions.current(req.scope)
            if req.signed is None:
                if req.path.startswith("/api/") or req.method != "GET":
                    return json_response({"error": {"message": "Sign in first."}}, 401)
                return redirect("/console/login?next=" + quote("/console" + req.path))
            if req.method not in ("GET", "HEAD"):
                submitted = None
                if _is_form(req.scope):
                    submitted = await req.field("_csrf")
                if not self.sessions.csrf_ok(req.signed, req.scope, submitted):
                    return self.error(req, 403, "This form came from another site, or its "
                                      "page is too old: reload the page and try again.")
            allowed = BOTH if who == BOTH else (OPERATOR if req.signed.operator else CUSTOMER)
            if who != allowed:
                raise PermissionDenied("This page is not part of your account's console.")
        return await handler(req)

    def _match(self, req: Request):
        for method, pattern, who, handler in self.routes:
            m = pattern.match(req.path)
            if m and method == req.method:
                return who, handler, m.groupdict()
        return None

    # ---- pages -------------------------------------------------------------------------
    def page(self, req: Request, template: str, status: int = 200, **context) -> Response:
        body = self.templates.render(template, req=req, signed=req.signed, **context)
        return Response(status, body.encode())

    def error(self, req: Request, status: int, message: str) -> Response:
        if req.path.startswith("/api/"):
            return json_response({"error": {"message": message}}, status)
        return self.page(req, "error.html", status, code=status, message=message)

    async def _home(self, req: Request) -> Response:
        return redirect("/console/overview" if req.signed.operator else "/console/me")

    async def _login_page(self, req: Request, status: int = 200, message: str = "") -> Response:
        signed = await self.sessions.current(req.scope)
        if signed is not None and not message:
            return redirect("/console/")
        return self.page(req, "login.html", status, message=message,
                         next=_safe_next(req.query.get("next")))

    async def _login(self, req: Request) -> Response:
        if not same_origin(req.scope):
            return self.error(req, 403, "Sign-in forms are accepted from this site only.")
        if not await self.sessions.allow_attempt(req.scope):
            return await self._login_page(req, 429, "Too many sign-in attempts from your "
                                          "address: wait a minute and try again.")
        made = await self.sessions.sign_in(req.scope, await req.field("key"))
        if made is None:
            return await self._login_page(req, 401, "That key is unknown or revoked.")
        token, _ = made
        target = _safe_next(await req.field("next")) or "/console/"
        return redirect(target, set_cookie(req.scope, token,
                                           max(1, math.ceil(self.sessions.lifetime))))

    async def _logout(self, req: Request) -> Response:
        await self.sessions.sign_out(req.signed)
        return redirect("/console/login", clear_cookie(req.scope))


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1].strip() for k, v in parse_qs(raw).items()}


def _is_form(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";")[0].strip() in (b"application/x-www-form-urlencoded",
                                                    b"multipart/form-data")
    return False


def _safe_next(target: str | None) -> str:
    """Only a path of the console: never another host (an open redirect)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return ""


def _static(name: str) -> Response:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise NotFound("No such file.")
    path = ROOT / "static" / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or not path.is_file():
        raise NotFound("No such file.")
    return Response(200, path.read_bytes(), kind, cache=True)
