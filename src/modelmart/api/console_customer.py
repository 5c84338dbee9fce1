"""A customer's own pages: usage and spend against budgets over time, its keys (made and
revoked by itself, never looser than the key it signed in with), the models it may use
at their prices. Every query is pinned to the session's customer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.tenancy import accounts

from . import admin_console, catalog_view, dashboards
from .console import BOTH, CUSTOMER, Request, Response, json_response, redirect
from .console_operator import label_points, optional_int

if TYPE_CHECKING:
    from .console import Console


def register(console: "Console") -> None:
    pages = CustomerPages(console)
    r = console.route
    r("GET", "/me", CUSTOMER, pages.me)
    r("GET", "/me/keys", CUSTOMER, pages.keys)
    r("POST", "/me/keys", CUSTOMER, pages.create_key)
    r("POST", "/me/keys/(?P<id>[0-9]+)/revoke", CUSTOMER, pages.revoke_key)
    r("GET", "/me/models", CUSTOMER, pages.models)
    r("DELETE", "/api/keys/(?P<id>[0-9]+)", BOTH, pages.api_revoke_key)


class CustomerPages:
    def __init__(self, console: "Console") -> None:
        self.console = console
        self.app = console.app

    async def me(self, req: Request) -> Response:
        cid = req.signed.customer_id
        data = await dashboards.overview(self.app, cid)
        [account] = await dashboards.spend(self.app, cid)
        return self.console.page(req, "me.html", data=data, account=account,
                                 points=label_points(data["series"]))

    async def keys(self, req: Request, status: int = 200, message: str = "",
                   created: dict | None = None) -> Response:
        [account] = await dashboards.spend(self.app, req.signed.customer_id)
        parent = req.signed.key
        return self.console.page(req, "me_keys.html", status, account=account,
                                 parent=accounts.key_view(parent), message=message,
                                 created=created,
                                 models=parent.models or sorted(self.app.catalog.models),
                                 max_keys=accounts.SELF_SERVICE_MAX_KEYS)

    async def create_key(self, req: Request) -> Response:
        form = await req.form()
        try:
            key, secret = await accounts.create_own_key(
                self.app.store, req.signed.key, name=await req.field("name") or None,
                models=[m for m in form.get("models", []) if m.strip()] or None,
                rpm=optional_int(await req.field("rpm"), "rpm"),
                tpm=optional_int(await req.field("tpm"), "tpm"),
                budget_usd=await req.field("budget") or None)
        except (ValueError, InvalidRequest) as exc:
            return await self.keys(req, 400, str(getattr(exc, "message", exc)))
        await admin_console.changed(self.app)
        return await self.keys(req, 201, created={"key": accounts.key_view(key),
                                                  "secret": secret})

    async def revoke_key(self, req: Request) -> Response:
        await self._revoke(req)
        return redirect("/console/me/keys")

    async def api_revoke_key(self, req: Request) -> Response:
        key = await self._revoke(req)
        return json_response({"id": key.id, "prefix": key.prefix, "revoked": True})

    async def _revoke(self, req: Request):
        key = await self.app.store.get_key(int(req.params["id"]))
        cid = req.signed.customer_id
        if key is None or key.role != "user" or (cid is not None and key.customer_id != cid):
            raise NotFound(f"No key {req.params['id']}.")
        if key.revoked_at is None:
            await accounts.revoke_key(self.app.store, str(key.id))
            await admin_console.changed(self.app)
        return key

    async def models(self, req: Request) -> Response:
        keys = await self.app.store.list_keys(customer_id=req.signed.customer_id)
        allowed: set[str] | None = set()
        for key in keys:
            if key.models is None:
                allowed = None
                break
            allowed |= set(key.models)
        return self.console.page(req, "me_models.html",
                                 models=catalog_view.customer_models(self.app, allowed))
