"""The admin REST API under ``/admin/v1``: customers, keys, usage, statements, margins,
models. Authenticated with the admin key; errors in OpenAI's ``{"error": {...}}`` shape."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, InternalError, InvalidRequest, NotFound, Overloaded,
    PermissionDenied,
)
from modelmart.dialects import openai_chat
from modelmart.dialects._checks import shown
from modelmart.metering import reports
from modelmart.store.errors import Conflict, StoreUnavailable
from modelmart.tenancy import accounts

from . import admin_batches, admin_console
from .admin_evals import EvalsAdmin
from . import admin_fields as fields
from .admin_spec import openapi_spec, DOCS_HTML
from modelmart.core.redact import strip_userinfo

from .admission import secret_from
from .http import Receive, Scope, Send, parse_json, read_body, send_json

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.admin")

PREFIX = "/admin/v1"
# The query parameters of each route (method, first segment, segments).
QUERY: dict[tuple[str, str, int], tuple[str, ...]] = {
    ("GET", "customers", 1): (), ("POST", "customers", 1): (),
    ("GET", "keys", 1): ("customer", "include_revoked"), ("POST", "keys", 1): (),
    ("DELETE", "keys", 2): (), ("GET", "usage", 1): ("customer", "since", "until", "by"),
    ("GET", "statements", 2): ("month", "format"), ("GET", "margins", 1): ("month",),
    ("GET", "models", 1): (),
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _query(scope: Scope) -> dict[str, str]:
    """The query parameters; one sent empty (``?since=``) is there, and must be valid."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _time(value: str | None, name: str) -> float | None:
    """A ``YYYY-MM-DD`` query parameter as epoch seconds: the start of that day in UTC."""
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise InvalidRequest(f"{name}: expected a date like 2026-11-01, got {shown(value)}",
                             param=name) from None


def _flag(q: dict[str, str], name: str) -> bool:
    value = q.get(name, "false")
    if value not in TRUE + FALSE:
        raise fields.bad(name, f"must be true or false, got {shown(value)}")
    return value in TRUE


def _query_names(spec: dict) -> list[tuple[str, re.Pattern, frozenset[str]]]:
    """(method, path pattern, the query parameters it declares) for every operation of the
    OpenAPI document: the routes of other modules (console, evaluations) refuse unknown
    parameters by what the document says, as the ones here do."""
    out = []
    for template, ops in spec["paths"].items():
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
        for method, op in ops.items():
            names = frozenset(p["name"] for p in op.get("parameters", ()) if p["in"] == "query")
            out.append((method.upper(), pattern, names))
    return out


class AdminAPI:
    def __init__(self, app: "App") -> None:
        self.app = app
        self.evals = EvalsAdmin(app)
        self._declared = _query_names(openapi_spec())

    def check_query(self, method: str, path: str, scope: Scope) -> None:
        for m, pattern, names in self._declared:
            if m == method and pattern.fullmatch(path):
                unknown = sorted(set(_query(scope)) - names)
                if unknown:
                    raise fields.bad(unknown[0], "is not a parameter of this route")
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        try:
            if path == "/admin/openapi.json":
                await send_json(send, 200, openapi_spec())
                return
            if path in ("/admin/docs", "/admin"):
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/html; charset=utf-8")]})
                await send({"type": "http.response.body", "body": DOCS_HTML.encode()})
                return
            self.authenticate(scope)
            self.check_query(method, path, scope)
            if path.startswith(PREFIX + "/evals/"):
                await self.evals(scope, receive, send)
                return
            status, body = await self._dispatch(method, path, scope, receive)
            if isinstance(body, str):
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"text/csv; charset=utf-8")]})
                await send({"type": "http.response.body", "body": body.encode()})
            else:
                await send_json(send, status, orjson.dumps(body, default=str))
        except StoreUnavailable as exc:
            # The keys are in memory, so the admin key still authenticates (never a 401 for
            # a store that is down): what is unavailable is the database, for now.
            status, body = openai_chat.encode_error(Overloaded(
                f"The database is unavailable, so the admin API cannot answer; retry shortly. "
                f"({exc})", retry_after=5))
            await send_json(send, status, body)
        except GatewayError as err:
            status, body = openai_chat.encode_error(err)
            await send_json(send, status, body)
        except Exception:  # a bug of ours: logged, and answered in the API's own shape
            log.exception("admin request %s %s failed", method, path)
            status, body = openai_chat.encode_error(InternalError("internal error; see the "
                                                                  "server log"))
            await send_json(send, status, body)

    def authenticate(self, scope: Scope) -> None:
        secret = secret_from(scope)
        if secret is None:
            raise AuthenticationFailed("Missing admin key: send 'Authorization: Bearer <admin key>'.")
        key = self.app.keys.lookup(secret)
        if key is None:
            raise AuthenticationFailed("Invalid admin key.")
        if key.role != "admin":
            raise PermissionDenied("This key is not an admin key.")

    async def _dispatch(self, method: str, path: str, scope: Scope, receive: Receive):
        if not path.startswith(PREFIX + "/"):
            raise NotFound(f"No admin route {method} {path}.")
        parts = path[len(PREFIX) + 1:].split("/")
        route = (method, parts[0], len(parts))
        q = _query(scope)
        unknown = sorted(set(q) - set(QUERY.get(route, ())))
        if unknown and route in QUERY:
            raise InvalidRequest(f"unknown query parameter(s) {', '.join(map(shown, unknown))}"
                                 f"; expected {', '.join(QUERY[route]) or 'none'}",
                                 param=unknown[0])
        if route == ("GET", "customers", 1):
            return 200, [self._customer(c) for c in await self.app.store.list_customers()]
        if route == ("POST", "customers", 1):
            return 201, await self._create_customer(await self._body(scope, receive))
        if route == ("GET", "keys", 1):
            return 200, await self._list_keys(q)
        if route == ("POST", "keys", 1):
            return 201, await self._create_key(await self._body(scope, receive))
        if route == ("DELETE", "keys", 2):
            return 200, await self._revoke(parts[1])
        if route == ("GET", "usage", 1):
            return 200, await self._usage(q)
        if route == ("GET", "statements", 2):
            return 200, await self._statement(parts[1], q)
        if route == ("GET", "margins", 1):
            return 200, await reports.margins(self.app.store, self._month(q))
        if route == ("GET", "models", 1):
            return 200, self._models()
        if parts[0] == "batches":  # api/admin_batches.py
            return await admin_batches.dispatch(self.app, method, parts, q)
        return await admin_console.dispatch(self.app, method, parts, q, scope, receive)

    async def _body(self, scope: Scope, receive: Receive) -> dict:
        data = parse_json(await read_body(scope, receive, 1 << 20))
        if not isinstance(data, dict):
            raise InvalidRequest("Expected a JSON object.")
        return data

    @staticmethod
    def _customer(c) -> dict:
        return {"id": c.id, "name": c.name, "rpm": c.rpm, "tpm": c.tpm, "created_at": c.created_at}

    async def _changed(self) -> None:
        await self.app.keys.reload()
        await self.app.refresh_customers()

    async def _create_customer(self, data: dict) -> dict:
        f = fields.check_body(data, fields.CUSTOMER)
        try:
            c = await accounts.create_customer(self.app.store, f["name"], rpm=f["rpm"],
                                               tpm=f["tpm"])
        except (ValueError, Conflict) as exc:
            raise InvalidRequest(str(exc), status=409 if isinstance(exc, Conflict) else 400) from None
        await self._changed()
        return self._customer(c)

    async def _customer_id(self, q: dict) -> int | None:
        """The id of the customer named by ``?customer=``, if any."""
        if "customer" not in q:
            return None
        name = fields.Text(required=True).check("customer", q["customer"])
        customer = await self.app.store.get_customer(name)
        if customer is None:
            raise NotFound(f"no customer named {shown(name)}", param="customer")
        return customer.id

    async def _list_keys(self, q: dict) -> list[dict]:
        customer_id = await self._customer_id(q)
        include = _flag(q, "include_revoked")
        keys = await self.app.store.list_keys(customer_id=customer_id, include_revoked=include)
        return [accounts.key_view(k) for k in keys]

    async def _create_key(self, data: dict) -> dict:
        f = fields.check_body(data, fields.KEY)
        if f["period"] is not None and f["budget_usd"] is None:
            raise fields.bad("period", "needs budget_usd")
        if await self.app.store.get_customer(f["customer"]) is None:
            raise NotFound(f"no customer named {shown(f['customer'])}; create it first",
                           param="customer")
        try:
            key, secret = await accounts.create_key(
                self.app.store, f["customer"], models=f["models"], rpm=f["rpm"], tpm=f["tpm"],
                budget_usd=f["budget_usd"], period=f["period"], aws=bool(f["aws"]),
                name=f["name"])
        except ValueError as exc:
            raise InvalidRequest(str(exc), param=getattr(exc, "field", None)) from None
        await self._changed()
        view = accounts.key_view(key) | {"secret": secret}
        if key.aws_secret:
            view["aws_secret_access_key"] = key.aws_secret
        return view

    async def _revoke(self, ident: str) -> dict:
        # Ids and prefixes are ASCII: "٣" is no id 3, and no id passes 2**63 - 1.
        if not ident.isascii() or (ident.isdigit() and int(ident) > fields.MAX_COUNT):
            raise NotFound(f"no key with id or prefix {shown(ident)}")
        try:
            key = await accounts.revoke_key(self.app.store, ident)
        except ValueError as exc:
            raise NotFound(str(exc)) from None
        await self._changed()
        return {"id": key.id, "prefix": key.prefix, "revoked": True}

    async def _usage(self, q: dict) -> list[dict]:
        by = list(dict.fromkeys(q.get("by", "model").split(",")))  # in order, once each
        bad = [b for b in by if b not in fields.BY_FIELDS]
        if bad:
            raise InvalidRequest(f"by: unknown field(s) {', '.join(map(shown, bad))}; "
                                 f"allowed: {', '.join(fields.BY_FIELDS)}", param="by")
        customer_id = await self._customer_id(q)
        return await reports.usage(self.app.store, customer_id=customer_id,
                                   since=_time(q.get("since"), "since"),
                                   until=_time(q.get("until"), "until"), by=by)

    @staticmethod
    def _month(q: dict) -> str:
        return fields.month(q.get("month"))

    async def _statement(self, customer: str, q: dict) -> Any:
        fmt = q.get("format", "json")
        if fmt not in ("json", "csv"):
            raise fields.bad("format", f"must be json or csv, got {shown(fmt)}")
        month = self._month(q)
        st = await reports.statement(self.app.store, fields.Text(required=True).check(
            "customer", customer), month)
        return st.to_csv() if fmt == "csv" else st.to_dict()

    def _models(self) -> list[dict]:
        health = self.app.router.health() if hasattr(self.app.router, "health") else {}
        out = []
        for entry in self.app.catalog.models.values():
            out.append({"id": entry.id, "strategy": entry.strategy, "deployments": [
                {"name": d.name, "provider": d.provider, "model": d.config.model,
                 "base_url": strip_userinfo(d.config.base_url) or None, "weight": d.weight, "region": d.region,
                 "health": health.get(d.name)} for d in entry.deployments]})
        return out
