"""The admin REST API under ``/admin/v1``: customers, keys, usage, statements, margins,
models. Authenticated with the admin key; errors in OpenAI's ``{"error": {...}}`` shape."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, InvalidRequest, NotFound, Overloaded, PermissionDenied,
)
from modelmart.dialects import openai_chat
from modelmart.metering import reports
from modelmart.store.errors import Conflict, StoreUnavailable
from modelmart.tenancy import accounts

from . import admin_console
from .admin_evals import EvalsAdmin
from .admin_spec import openapi_spec, DOCS_HTML
from modelmart.core.redact import strip_userinfo

from .admission import secret_from
from .http import Receive, Scope, Send, parse_json, read_body, send_json

if TYPE_CHECKING:
    from .app import App

PREFIX = "/admin/v1"
BY_FIELDS = {"model", "day", "month", "key", "customer", "provider", "deployment", "status"}


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


def _time(value: str | None, name: str) -> float | None:
    from datetime import datetime, timezone

    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name}: expected a date like 2026-11-01, got {value!r}",
                             param=name) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


class AdminAPI:
    def __init__(self, app: "App") -> None:
        self.app = app
        self.evals = EvalsAdmin(app)

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
        q = _query(scope)
        route = (method, parts[0], len(parts))
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
        try:
            c = await accounts.create_customer(self.app.store, data.get("name"),
                                               rpm=data.get("rpm"), tpm=data.get("tpm"))
        except (ValueError, Conflict) as exc:
            raise InvalidRequest(str(exc), status=409 if isinstance(exc, Conflict) else 400) from None
        await self._changed()
        return self._customer(c)

    async def _list_keys(self, q: dict) -> list[dict]:
        customer_id = None
        if q.get("customer"):
            customer = await self.app.store.get_customer(q["customer"])
            if customer is None:
                raise NotFound(f"no customer named {q['customer']!r}", param="customer")
            customer_id = customer.id
        include = q.get("include_revoked", "false").lower() in ("1", "true", "yes")
        keys = await self.app.store.list_keys(customer_id=customer_id, include_revoked=include)
        return [accounts.key_view(k) for k in keys]

    async def _create_key(self, data: dict) -> dict:
        models = data.get("models")
        if models is not None and not (isinstance(models, list)
                                       and all(isinstance(m, str) for m in models)):
            raise InvalidRequest("models must be a list of model ids", param="models")
        try:
            key, secret = await accounts.create_key(
                self.app.store, str(data.get("customer") or ""), models=models,
                rpm=data.get("rpm"), tpm=data.get("tpm"), budget_usd=data.get("budget_usd"),
                period=data.get("period"), aws=bool(data.get("aws")), name=data.get("name"))
        except ValueError as exc:
            raise InvalidRequest(str(exc), param=getattr(exc, "field", None)) from None
        await self._changed()
        view = accounts.key_view(key) | {"secret": secret}
        if key.aws_secret:
            view["aws_secret_access_key"] = key.aws_secret
        return view

    async def _revoke(self, ident: str) -> dict:
        try:
            key = await accounts.revoke_key(self.app.store, ident)
        except ValueError as exc:
            raise NotFound(str(exc)) from None
        await self._changed()
        return {"id": key.id, "prefix": key.prefix, "revoked": True}

    async def _usage(self, q: dict) -> list[dict]:
        by = [b for b in q.get("by", "model").split(",") if b]
        bad = [b for b in by if b not in BY_FIELDS]
        if bad:
            raise InvalidRequest(f"by: unknown field(s) {', '.join(bad)}; "
                                 f"allowed: {', '.join(sorted(BY_FIELDS))}", param="by")
        customer_id = None
        if q.get("customer"):
            customer = await self.app.store.get_customer(q["customer"])
            if customer is None:
                raise NotFound(f"no customer named {q['customer']!r}", param="customer")
            customer_id = customer.id
        return await reports.usage(self.app.store, customer_id=customer_id,
                                   since=_time(q.get("since"), "since"),
                                   until=_time(q.get("until"), "until"), by=by)

    @staticmethod
    def _month(q: dict) -> str:
        month = q.get("month")
        if not month:
            raise InvalidRequest("month is required, e.g. ?month=2026-11", param="month")
        return month

    async def _statement(self, customer: str, q: dict) -> Any:
        st = await reports.statement(self.app.store, customer, self._month(q))
        return st.to_csv() if q.get("format") == "csv" else st.to_dict()

    def _models(self) -> list[dict]:
        health = self.app.router.health() if hasattr(self.app.router, "health") else {}
        out = []
        for entry in self.app.catalog.models.values():
            out.append({"id": entry.id, "strategy": entry.strategy, "deployments": [
                {"name": d.name, "provider": d.provider, "model": d.config.model,
                 "base_url": strip_userinfo(d.config.base_url) or None, "weight": d.weight, "region": d.region,
                 "health": health.get(d.name)} for d in entry.deployments]})
        return out
