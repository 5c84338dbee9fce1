"""Batches for the operator: ``/admin/v1/batches`` (list, one, cancel) and the same views
for ``modelmart batches``. Progress is counted from the requests' rows; the price so far
is the sum of what each answered request was billed (the ledger has the same figures, one
row per request with ``extra.batch_id``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.core.money import format_usd
from modelmart.store.batches import ACTIVE, BatchTables

from . import batch_views

if TYPE_CHECKING:
    from .app import App

STATUSES = ("validating", "in_progress", "cancelling", "completed", "cancelled", "expired",
            "failed")


async def progress_list(store, *, customer: str | None = None, status: str | None = None,
                        limit: int = 100) -> list[dict]:
    """Newest first, every customer's unless ``customer`` names one."""
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", param="status")
    tables = BatchTables(store)
    customer_id = None
    if customer:
        found = await store.get_customer(customer)
        if found is None:
            raise NotFound(f"no customer named {customer!r}", param="customer")
        customer_id = found.id
    batches = await tables.list_batches(customer_id=customer_id, any_customer=not customer,
                                        status=status, limit=limit)
    counts = await tables.counts([b.id for b in batches])
    names = {c.id: c.name for c in await store.list_customers()}
    return [_view(b, counts[b.id], names) for b in batches]


async def progress_one(store, batch_id: str) -> dict:
    tables = BatchTables(store)
    batch = await tables.get_batch(batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id!r}", param="batch_id")
    counts = await tables.counts([batch.id])
    names = {c.id: c.name for c in await store.list_customers()}
    return _view(batch, counts[batch.id], names)


async def cancel(store, batch_id: str) -> dict:
    """Asks the batch's runner to stop; it ends the requests not run yet as cancelled."""
    tables = BatchTables(store)
    batch = await tables.get_batch(batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id!r}", param="batch_id")
    if batch.status in (*ACTIVE, "validating"):
        await tables.set_status(batch.id, "cancelling", only_from=("in_progress",),
                                cancel_requested_at=time.time())
    return await progress_one(store, batch_id)


def _view(batch, counts: dict, names: dict) -> dict:
    view = batch_views.progress(batch, counts)
    view["customer"] = names.get(batch.customer_id)
    view["price_usd"] = format_usd(counts["price_pico"], 6)
    return view


async def dispatch(app: "App", method: str, parts: list[str], q: dict) -> tuple[int, Any]:
    route = (method, len(parts), parts[2] if len(parts) > 2 else None)
    if route == ("GET", 1, None):
        limit = q.get("limit", "100")
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 1000:
            raise InvalidRequest("limit must be a whole number from 1 to 1000", param="limit")
        return 200, await progress_list(app.store, customer=q.get("customer"),
                                        status=q.get("status"), limit=int(limit))
    if route == ("GET", 2, None):
        return 200, await progress_one(app.store, parts[1])
    if route == ("POST", 3, "cancel"):
        result = await cancel(app.store, parts[1])
        app.batches.runner.wake(cancelled=parts[1])
        return 200, result
    raise NotFound(f"No admin route {method} /admin/v1/{'/'.join(parts)}.")


def spec_paths(p: str, op) -> dict:
    """The OpenAPI entries of these routes (``api/admin_spec.py``)."""
    batch = ("batch", "path", True, "batch id (batch_... or msgbatch_...)")
    return {
        f"{p}/batches": {"get": op("Batches of every customer with their progress and price "
                                   "so far", params=[
            ("customer", "query", False, "customer name"),
            ("status", "query", False, {"enum": list(STATUSES)}, "only batches in this state"),
            ("limit", "query", False, {"type": "integer", "minimum": 1, "maximum": 1000},
             "at most this many, newest first (default 100)")])},
        f"{p}/batches/{{batch}}": {"get": op("One batch's progress", params=[batch])},
        f"{p}/batches/{{batch}}/cancel": {"post": op(
            "Cancel a batch: requests not run yet end as cancelled", params=[batch])},
    }
