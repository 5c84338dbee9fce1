"""Admin API routes added for the console (``/admin/v1/...``): the overview, the filtered
ledger (JSON or CSV), the catalog with prices, costs and health, spend against budgets,
and changing a key's or a customer's limits (PATCH). ``api/admin.py`` hands over any
route it does not know; each route here is in the OpenAPI document (``SPEC_PATHS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.tenancy import accounts

from . import catalog_view, dashboards
from .http import Receive, Scope, parse_json, read_body

if TYPE_CHECKING:
    from .app import App


async def dispatch(app: "App", method: str, parts: list[str], q: dict, scope: Scope,
                   receive: Receive) -> tuple[int, Any]:
    route = (method, parts[0], len(parts))
    if route == ("GET", "overview", 1):
        return 200, await dashboards.overview(
            app, None, dashboards.parse_day(q.get("since"), "since"),
            dashboards.parse_day(q.get("until"), "until"))
    if route == ("GET", "ledger", 1):
        f = await dashboards.resolve_filter(app, q, None)
        if q.get("format") == "csv":
            return 200, await dashboards.ledger_csv(app, f, customer_view=False)
        return 200, await dashboards.ledger(app, f, False, _limit(q), q.get("before"))
    if route == ("GET", "catalog", 1):
        return 200, catalog_view.catalog(app)
    if route == ("GET", "health", 1):
        return 200, catalog_view.health(app)
    if route == ("GET", "spend", 1):
        return 200, await dashboards.spend(app, None)
    if route == ("PATCH", "keys", 2):
        return 200, await update_key(app, parts[1], await _body(scope, receive))
    if route == ("PATCH", "customers", 2):
        return 200, await update_customer(app, parts[1], await _body(scope, receive))
    raise NotFound(f"No admin route {method} /admin/v1/{'/'.join(parts)}.")


def _limit(q: dict) -> int:
    try:
        return int(q.get("limit") or 100)
    except ValueError:
        raise InvalidRequest("limit must be a whole number", param="limit") from None


async def _body(scope: Scope, receive: Receive) -> dict:
    data = parse_json(await read_body(scope, receive, 1 << 16))
    if not isinstance(data, dict):
        raise InvalidRequest("Expected a JSON object.")
    return data


async def changed(app: "App") -> None:
    """Read-your-writes on this process; the others follow the change counter."""
    await app.keys.reload()
    await app.refresh_customers()


async def update_key(app: "App", ident: str, changes: dict, customer_id: int | None = None
                     ) -> dict:
    """PATCH a key; with ``customer_id`` only that customer's keys exist (404 otherwise)."""
    try:
        key = await accounts.find_key(app.store, ident)
    except ValueError:
        key = None
    if key is None or (customer_id is not None and key.customer_id != customer_id):
        raise NotFound(f"no key with id or prefix {ident!r}", param="key")
    try:
        key = await accounts.update_key(app.store, str(key.id), changes)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=getattr(exc, "field", None)) from None
    await changed(app)
    return accounts.key_view(key)


async def update_customer(app: "App", name: str, changes: dict) -> dict:
    try:
        c = await accounts.update_customer(app.store, name, changes)
    except LookupError as exc:
        raise NotFound(str(exc), param="customer") from None
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=getattr(exc, "field", None)) from None
    await changed(app)
    return {"id": c.id, "name": c.name, "rpm": c.rpm, "tpm": c.tpm, "created_at": c.created_at}


# ---- the OpenAPI document -----------------------------------------------------------------

_LIMIT = {"type": ["integer", "null"], "minimum": 1, "description": "null removes the limit"}
_KEY_PATCH = {"type": "object", "minProperties": 1, "properties": {
    "rpm": _LIMIT, "tpm": _LIMIT,
    "models": {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1,
               "description": "null: every model"},
    "budget_usd": {"type": ["string", "null"], "description": "decimal USD; null: no budget"},
    "period": {"enum": ["day", "month", "total"]}, "name": {"type": ["string", "null"]}}}
_CUSTOMER_PATCH = {"type": "object", "minProperties": 1,
                   "properties": {"rpm": _LIMIT, "tpm": _LIMIT}}
_RANGE = [("since", "query", False, "start date, inclusive (default: 29 days before today)"),
          ("until", "query", False, "end date, exclusive (default: tomorrow)")]
_FILTERS = [("customer", "query", False, "customer name"),
            ("key", "query", False, "key id or prefix"),
            ("model", "query", False, "model id"), ("provider", "query", False, "provider"),
            ("status", "query", False, "ok, error, refused, client_disconnected, ..."),
            ("since", "query", False, "start date or time, inclusive"),
            ("until", "query", False, "end date or time, exclusive")]


def spec_paths(prefix: str, op) -> dict:
    """The paths above, built with admin_spec's ``_op``."""
    p = prefix
    return {
        f"{p}/overview": {"get": op(
            "Requests, tokens, revenue, cost, margin, error and refusal rates today, this "
            "month and over a range; a series per hour or day; top customers and models",
            params=_RANGE, constraints="until after since, at most 400 days apart")},
        f"{p}/ledger": {"get": op(
            "Ledger rows, newest first, with the totals of every row the filter selects",
            params=[*_FILTERS, ("limit", "query", False, "rows a page, 1-1000 (100)"),
                    ("before", "query", False, "the 'next' value of the previous page"),
                    ("format", "query", False, "json (default) or csv: every row")],
            constraints="until after since; before is a previous page's next value; a "
                        "customer or key that does not exist is a 400")},
        f"{p}/catalog": {"get": op(
            "Models, deployments, prices and costs with effective dates, capabilities, health")},
        f"{p}/health": {"get": op("Each deployment's live health, by deployment name")},
        f"{p}/spend": {"get": op(
            "Each customer's spend this month and in all; each key's against its budget")},
        f"{p}/keys/{{key}}": {"patch": op(
            "Change a key's rpm, tpm, models, budget or name (servers follow within a second)",
            params=[("key", "path", True, "key id or prefix")], body=_KEY_PATCH,
            constraints="a period needs a budget; models must be in the catalog")},
        f"{p}/customers/{{customer}}": {"patch": op(
            "Change a customer's rpm and tpm (across all its keys)",
            params=[("customer", "path", True, "customer name")], body=_CUSTOMER_PATCH,
            constraints="the limits of a customer's keys are not checked against it")},
    }
