"""The operator's pages: overview, catalog, customers and keys, usage (shared with
customers, pinned to their own rows), margins, playground, leaderboard."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.metering import reports
from modelmart.store.errors import Conflict
from modelmart.tenancy import accounts

from . import admin_console, catalog_view, dashboards
from .console import BOTH, OPERATOR, Request, Response, json_response, redirect

if TYPE_CHECKING:
    from .console import Console


def register(console: "Console") -> None:
    pages = OperatorPages(console)
    r = console.route
    r("GET", "/overview", OPERATOR, pages.overview)
    r("GET", "/catalog", OPERATOR, pages.catalog)
    r("GET", "/customers", OPERATOR, pages.customers)
    r("POST", "/customers", OPERATOR, pages.create_customer)
    r("GET", "/customers/(?P<name>[^/]+)", OPERATOR, pages.customer)
    r("POST", "/customers/(?P<name>[^/]+)/limits", OPERATOR, pages.customer_limits)
    r("POST", "/keys", OPERATOR, pages.create_key)
    r("POST", "/keys/(?P<id>[0-9]+)", OPERATOR, pages.update_key)
    r("POST", "/keys/(?P<id>[0-9]+)/revoke", OPERATOR, pages.revoke_key)
    r("GET", "/usage", BOTH, pages.usage)
    r("GET", "/usage.csv", BOTH, pages.usage_csv)
    r("GET", "/margins", OPERATOR, pages.margins)
    r("GET", "/playground", OPERATOR, pages.playground)
    r("GET", "/leaderboard", OPERATOR, pages.leaderboard)
    # JSON for the pages' scripts (and anyone with a session)
    r("GET", "/api/health", OPERATOR, pages.api_health)
    r("GET", "/api/overview", BOTH, pages.api_overview)
    r("GET", "/api/ledger", BOTH, pages.api_ledger)
    r("GET", "/api/requests/(?P<rid>[A-Za-z0-9_-]+)", BOTH, pages.api_request)
    r("GET", "/api/spend", BOTH, pages.api_spend)
    r("PATCH", "/api/keys/(?P<id>[0-9]+)", OPERATOR, pages.api_update_key)


def optional_int(text: str, name: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, got {text!r}", param=name) from None


async def key_form(req: Request) -> dict:
    """The limits of a key form: blank removes a limit; no model ticked: every model."""
    form = await req.form()
    models = [m for m in form.get("models", []) if m.strip()]
    budget = await req.field("budget")
    changes = {"rpm": optional_int(await req.field("rpm"), "rpm"),
               "tpm": optional_int(await req.field("tpm"), "tpm"),
               "models": models or None, "budget_usd": budget or None}
    if budget:
        changes["period"] = await req.field("period") or "month"
    return changes


def label_points(series: dict) -> list[dict]:
    cut = slice(11, 16) if series["bucket"] == "hour" else slice(5, 10)
    return [{**p, "label": p["t"][cut],
             "requests_ok": p["requests"] - p["errors"] - p["refused"]}
            for p in series["points"]]


class OperatorPages:
    def __init__(self, console: "Console") -> None:
        self.console = console
        self.app = console.app

    async def overview(self, req: Request) -> Response:
        since = dashboards.parse_day(req.query.get("since"), "since")
        until = dashboards.parse_day(req.query.get("until"), "until")
        data = await dashboards.overview(self.app, None, since, until)
        return self.console.page(req, "overview.html", data=data,
                                 points=label_points(data["series"]),
                                 since=data["windows"]["range"]["since"][:10],
                                 until=data["windows"]["range"]["until"][:10])

    async def catalog(self, req: Request) -> Response:
        return self.console.page(req, "catalog.html", models=catalog_view.catalog(self.app))

    async def customers(self, req: Request, status: int = 200, message: str = "") -> Response:
        return self.console.page(req, "customers.html", status,
                                 customers=await dashboards.spend(self.app, None),
                                 message=message)

    async def create_customer(self, req: Request) -> Response:
        try:
            c = await accounts.create_customer(
                self.app.store, await req.field("name"),
                rpm=optional_int(await req.field("rpm"), "rpm"),
                tpm=optional_int(await req.field("tpm"), "tpm"))
        except (ValueError, Conflict, InvalidRequest) as exc:
            return await self.customers(req, 400, str(getattr(exc, "message", exc)))
        await admin_console.changed(self.app)
        return redirect(f"/console/customers/{quote(c.name)}")

    async def customer(self, req: Request, status: int = 200, message: str = "",
                       created: dict | None = None) -> Response:
        customer = await self.app.store.get_customer(req.params["name"])
        if customer is None:
            raise NotFound(f"No customer named {req.params['name']!r}.")
        [spend] = await dashboards.spend(self.app, customer.id)
        return self.console.page(req, "customer.html", status, customer=spend,
                                 models=sorted(self.app.catalog.models), message=message,
                                 created=created, saved=req.query.get("saved", ""))

    async def customer_limits(self, req: Request) -> Response:
        name = req.params["name"]
        changes = {"rpm": optional_int(await req.field("rpm"), "rpm"),
                   "tpm": optional_int(await req.field("tpm"), "tpm")}
        try:
            await accounts.update_customer(self.app.store, name, changes)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        except ValueError as exc:
            return await self.customer(req, 400, str(exc))
        await admin_console.changed(self.app)
        return redirect(f"/console/customers/{quote(name)}?saved=limits")

    async def create_key(self, req: Request) -> Response:
        customer = await req.field("customer")
        req.params["name"] = customer
        changes = await key_form(req)
        try:
            key, secret = await accounts.create_key(
                self.app.store, customer, models=changes["models"], rpm=changes["rpm"],
                tpm=changes["tpm"], budget_usd=changes["budget_usd"],
                period=changes.get("period"), name=await req.field("name") or None)
        except ValueError as exc:
            if await self.app.store.get_customer(customer) is None:
                raise NotFound(str(exc)) from None
            return await self.customer(req, 400, str(exc))
        await admin_console.changed(self.app)
        return await self.customer(req, 201, created={"key": accounts.key_view(key),
                                                       "secret": secret})

    async def update_key(self, req: Request) -> Response:
        key = await self._key(req.params["id"])
        customer = await self.app.store.get_customer_by_id(key.customer_id)
        req.params["name"] = customer.name
        try:
            await admin_console.update_key(self.app, str(key.id), await key_form(req))
        except InvalidRequest as exc:
            return await self.customer(req, 400, exc.message)
        return redirect(f"/console/customers/{quote(customer.name)}?saved={key.id}")

    async def revoke_key(self, req: Request) -> Response:
        key = await self._key(req.params["id"])
        customer = await self.app.store.get_customer_by_id(key.customer_id)
        if key.revoked_at is None:
            await accounts.revoke_key(self.app.store, str(key.id))
            await admin_console.changed(self.app)
        return redirect(f"/console/customers/{quote(customer.name)}?saved=revoked")

    async def _key(self, ident: str):
        key = await self.app.store.get_key(int(ident))
        if key is None or key.customer_id is None:
            raise NotFound(f"No key {ident}.")
        return key

    # ---- usage (both) --------------------------------------------------------------------
    async def usage(self, req: Request) -> Response:
        signed = req.signed
        f = await dashboards.resolve_filter(self.app, req.query, signed.customer_id)
        data = await dashboards.ledger(self.app, f, not signed.operator, 100,
                                       req.query.get("before"))
        query = {k: v for k, v in req.query.items() if k != "before" and v}
        choices = {"models": sorted(self.app.catalog.models),
                   "providers": sorted({d.provider for d in self.app.catalog.deployments()}),
                   "statuses": ["ok", "error", "refused", "client_disconnected",
                                "upstream_failed_mid_stream"],
                   "customers": [] if not signed.operator else
                   [c.name for c in await self.app.store.list_customers()]}
        return self.console.page(req, "usage.html", data=data, q=query, choices=choices,
                                 qs="&".join(f"{k}={quote(v)}" for k, v in query.items()))

    async def usage_csv(self, req: Request) -> Response:
        signed = req.signed
        f = await dashboards.resolve_filter(self.app, req.query, signed.customer_id)
        body = await dashboards.ledger_csv(self.app, f, not signed.operator)
        return Response(200, body.encode(), "text/csv; charset=utf-8", headers=[
            (b"content-disposition", b'attachment; filename="modelmart-usage.csv"')])

    # ---- margins ---------------------------------------------------------------------------
    async def margins(self, req: Request) -> Response:
        month = req.query.get("month") or time.strftime("%Y-%m", time.gmtime())
        rollup = dashboards.Rollup(self.app.store)
        data = await reports.margins(rollup, month)
        start, end = reports.month_bounds(month)
        by_pm = await reports.billed_summary(rollup, ["provider", "model"], since=start,
                                             until=end)
        cells = [dashboards.money({"provider": r["provider"], "model": r["model"],
                                   "requests": r["requests"], "cost_pico": r["cost_pico"],
                                   "price_pico": r["price_pico"]})
                 for r in sorted(by_pm, key=lambda r: (str(r["provider"]), r["model"]))]
        months = await self._months(end)
        return self.console.page(req, "margins.html", data=data, month=month, cells=cells,
                                 months=months)

    async def _months(self, end: float, count: int = 12) -> list[dict]:
        """Revenue, cost and margin of the ``count`` months up to ``end`` (from the rollup)."""
        from modelmart.store.ledger import LedgerFilter

        starts = [end]
        for _ in range(count):
            starts.insert(0, dashboards.month_start(starts[0] - 1))
        rows = await self.app.store.ledger_summary(LedgerFilter(since=starts[0], until=end),
                                                   ["day"])
        out = []
        for a, b in zip(starts, starts[1:]):
            inside = [r for r in rows if a <= r["day"] * 86400 < b]
            out.append(dashboards.money({
                "label": dashboards.iso(a)[:7], "cost_pico": sum(r["cost_pico"] for r in inside),
                "price_pico": sum(r["price_pico"] for r in inside)}))
        for m in out:
            m["margin_or_zero"] = max(m["margin_pico"], 0)
        return out

    # ---- playground and leaderboard ----------------------------------------------------------
    async def playground(self, req: Request) -> Response:
        return self.console.page(req, "playground.html", models=sorted(self.app.catalog.models))

    async def leaderboard(self, req: Request) -> Response:
        board, problem = await leaderboard_data(self.app)
        return self.console.page(req, "leaderboard.html", board=board, problem=problem)

    # ---- JSON --------------------------------------------------------------------------------
    async def api_health(self, req: Request) -> Response:
        return json_response(catalog_view.health(self.app))

    async def api_overview(self, req: Request) -> Response:
        return json_response(await dashboards.overview(
            self.app, req.signed.customer_id,
            dashboards.parse_day(req.query.get("since"), "since"),
            dashboards.parse_day(req.query.get("until"), "until")))

    async def api_ledger(self, req: Request) -> Response:
        f = await dashboards.resolve_filter(self.app, req.query, req.signed.customer_id)
        return json_response(await dashboards.ledger(
            self.app, f, not req.signed.operator, admin_console._limit(req.query),
            req.query.get("before")))

    async def api_request(self, req: Request) -> Response:
        """One ledger row by request id (the playground shows each answer's cost)."""
        rec = await self.app.store.get_usage(req.params["rid"])
        customer_id = req.signed.customer_id
        if rec is None or (customer_id is not None and rec.customer_id != customer_id):
            raise NotFound("No such request in the ledger (yet).")
        names = await dashboards.id_names(self.app)
        return json_response(dashboards.row_view(0, rec, names, customer_id is not None))

    async def api_spend(self, req: Request) -> Response:
        return json_response(await dashboards.spend(self.app, req.signed.customer_id))

    async def api_update_key(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise InvalidRequest("Expected a JSON object.")
        return json_response(await admin_console.update_key(self.app, req.params["id"], body))


async def leaderboard_data(app) -> tuple[list | None, str]:
    """The board of ``modelmart.evals.leaderboard.leaderboard(EvalStore(store))`` (numpy and
    scipy are imported with it: only when this page is asked for)."""
    try:
        from modelmart.evals.leaderboard import leaderboard
        from modelmart.store.evals import EvalStore
    except ImportError:
        return None, "Evaluation is not part of this installation yet."
    try:
        return await leaderboard(EvalStore(app.store)), ""
    except Exception as exc:  # a newer evals whose shape this page does not know
        return None, f"The leaderboard could not be read: {exc}"
