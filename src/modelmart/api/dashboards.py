"""The numbers behind the console's pages and the admin API's endpoints for them: the
overview, the filtered ledger, spend against budgets.

Every function takes ``customer_id``: None for the operator, a customer's id for that
customer's own view, which never contains another customer's rows (the filter is applied
in SQL, not after). Money is exact: picodollar ints, and USD strings from ``format_usd``.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.core.money import format_usd
from modelmart.metering.reports import margin_pct
from modelmart.store.ledger import DAY, HOUR, LedgerFilter
from modelmart.tenancy.budgets import budget_window

if TYPE_CHECKING:
    from .app import App

ERROR_STATUSES = ("error", "upstream_failed_mid_stream")
MAX_RANGE_DAYS = 400
TOKEN_PARTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def day_start(ts: float) -> float:
    return (ts // DAY) * DAY


def month_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


def parse_day(value: str | None, name: str) -> float | None:
    """``YYYY-MM-DD`` (or a full ISO time; UTC unless it says otherwise) → epoch seconds."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name}: expected a date like 2026-11-01, got {value!r}",
                             param=name) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def totals(rows: list[dict]) -> dict:
    """Rows of a summary by status → one total, with error and refusal rates."""
    out = {"requests": 0, **{t: 0 for t in TOKEN_PARTS}, "reasoning_tokens": 0,
           "cost_pico": 0, "price_pico": 0, "errors": 0, "refused": 0}
    for row in rows:
        for name in ("requests", *TOKEN_PARTS, "reasoning_tokens", "cost_pico", "price_pico"):
            out[name] += row[name]
        if row.get("status") in ERROR_STATUSES:
            out["errors"] += row["requests"]
        elif row.get("status") == "refused":
            out["refused"] += row["requests"]
    out["tokens"] = sum(out[t] for t in TOKEN_PARTS)
    return money(out)


def money(item: dict) -> dict:
    """Adds margin and the USD strings to a dict with cost_pico and price_pico."""
    item["margin_pico"] = item["price_pico"] - item["cost_pico"]
    for name in ("cost", "price", "margin"):
        item[f"{name}_usd"] = format_usd(item[f"{name}_pico"])
    item["margin_pct"] = margin_pct(item["price_pico"], item["margin_pico"])
    if "errors" in item:
        n = item["requests"]
        item["error_rate"] = round(item["errors"] / n, 4) if n else 0.0
        item["refusal_rate"] = round(item["refused"] / n, 4) if n else 0.0
    return item


def for_customer(item: dict) -> dict:
    """What a customer may see of a sum: their price, never the operator's cost."""
    for name in ("cost_pico", "cost_usd", "margin_pico", "margin_usd", "margin_pct"):
        item.pop(name, None)
    return item


def default_range(now: float) -> tuple[float, float]:
    """The last 30 days, today included."""
    tomorrow = day_start(now) + DAY
    return tomorrow - 30 * DAY, tomorrow


async def overview(app: "App", customer_id: int | None, since: float | None = None,
                   until: float | None = None, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    since0, until0 = default_range(now)
    since, until = since if since is not None else since0, until if until is not None else until0
    if until <= since:
        raise InvalidRequest("until must be after since", param="until")
    if until - since > MAX_RANGE_DAYS * DAY:
        raise InvalidRequest(f"a range may span at most {MAX_RANGE_DAYS} days", param="since")
    store = app.store
    today, month = day_start(now), month_start(now)
    windows = {"today": (today, today + DAY), "month": (month, _next_month(month)),
               "range": (since, until)}
    out: dict = {"windows": {}}
    for name, (a, b) in windows.items():
        rows = await store.ledger_summary(LedgerFilter(customer_id=customer_id, since=a,
                                                       until=b), ["status"])
        out["windows"][name] = {"since": iso(a), "until": iso(b), **totals(rows)}
    out["series"] = await _series(store, customer_id, since, until)
    f = LedgerFilter(customer_id=customer_id, since=since, until=until)
    names = await id_names(app)
    if customer_id is None:
        out["top_customers"] = _top(await store.ledger_summary(f, ["customer"]), "customer",
                                    names["customers"])
    else:
        out["top_keys"] = _top(await store.ledger_summary(f, ["key"]), "key", names["keys"])
    out["top_models"] = _top(await store.ledger_summary(f, ["model"]), "model", None)
    if customer_id is not None:
        for item in [*out["windows"].values(), *out["series"]["points"],
                     *out["top_keys"], *out["top_models"]]:
            for_customer(item)
    return out


def _next_month(start: float) -> float:
    d = datetime.fromtimestamp(start, timezone.utc)
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1).timestamp()


async def _series(store, customer_id: int | None, since: float, until: float) -> dict:
    """Per hour for windows of two days or less, else per day; every bucket present."""
    size, name = (HOUR, "hour") if until - since <= 2 * DAY else (DAY, "day")
    rows = await store.ledger_summary(
        LedgerFilter(customer_id=customer_id, since=since, until=until), [name, "status"])
    by_bucket: dict[int, list[dict]] = {}
    for row in rows:
        by_bucket.setdefault(int(row[name]), []).append(row)
    points = []
    for n in range(int(since // size), int(-(-until // size))):
        point = totals(by_bucket.get(n, []))
        points.append({"t": iso(n * size), **point})
    return {"bucket": name, "points": points}


def _top(rows: list[dict], group: str, names: dict | None, limit: int = 10) -> list[dict]:
    rows.sort(key=lambda r: (-r["price_pico"], -r["requests"]))
    out = []
    for row in rows[:limit]:
        ident = row[group]
        label = names.get(ident, str(ident)) if names is not None else ident
        out.append(money({group: label, "id": ident, "requests": row["requests"],
                          "tokens": sum(row[t] for t in TOKEN_PARTS),
                          "cost_pico": row["cost_pico"], "price_pico": row["price_pico"]}))
    return out


async def id_names(app: "App") -> dict:
    customers = {c.id: c.name for c in await app.store.list_customers()}
    keys = {k.id: k.prefix + (f" ({k.name})" if k.name else "")
            for k in await app.store.list_keys(include_revoked=True)}
    return {"customers": customers, "keys": keys}


# ---- the ledger ------------------------------------------------------------------------

async def resolve_filter(app: "App", q: dict, customer_id: int | None) -> LedgerFilter:
    """Query parameters → a LedgerFilter. A customer's view is pinned to that customer:
    naming another customer, or a key of another customer, is a 404."""
    store = app.store
    cid = customer_id
    if q.get("customer"):
        customer = await store.get_customer(q["customer"])
        if customer is None or (customer_id is not None and customer.id != customer_id):
            raise NotFound(f"no customer named {q['customer']!r}", param="customer")
        cid = customer.id
    key_id = None
    if q.get("key"):
        from modelmart.tenancy.accounts import find_key

        try:
            key = await find_key(store, q["key"])
        except ValueError:
            key = None
        if key is None or (customer_id is not None and key.customer_id != customer_id):
            raise NotFound(f"no key {q['key']!r}", param="key")
        key_id = key.id
    return LedgerFilter(customer_id=cid, key_id=key_id, model=q.get("model") or None,
                        provider=q.get("provider") or None, status=q.get("status") or None,
                        since=parse_day(q.get("since"), "since"),
                        until=parse_day(q.get("until"), "until"))


def _before(value: str | None) -> tuple[float, int] | None:
    if not value:
        return None
    try:
        at, _, row_id = value.partition(",")
        return float(at), int(row_id)
    except ValueError:
        raise InvalidRequest("before: expected the 'next' value of a previous page",
                             param="before") from None


def row_view(row_id: int, rec, names: dict, customer_view: bool) -> dict:
    item = {"id": row_id, "request_id": rec.request_id, "time": iso(rec.created_at),
            "customer": names["customers"].get(rec.customer_id),
            "key": names["keys"].get(rec.key_id), "model": rec.model,
            "provider": rec.provider, "deployment": rec.deployment, "surface": rec.surface,
            "stream": rec.stream, "status": rec.status, "http_status": rec.http_status,
            **{t: getattr(rec, t) for t in (*TOKEN_PARTS, "reasoning_tokens")},
            "cost_pico": rec.cost_pico, "price_pico": rec.price_pico,
            "latency_ms": rec.latency_ms, "ttft_ms": rec.ttft_ms, "error": rec.error}
    money(item)
    if customer_view:
        for name in ("provider", "deployment"):
            item.pop(name)
        for_customer(item)
    return item


async def ledger(app: "App", f: LedgerFilter, customer_view: bool, limit: int = 100,
                 before: str | None = None) -> dict:
    limit = max(1, min(int(limit), 1000))
    rows = await app.store.ledger_page(f, limit + 1, _before(before))
    names = await id_names(app)
    more = len(rows) > limit
    rows = rows[:limit]
    total = totals(await app.store.ledger_summary(f, ["status"]))
    out = {"totals": for_customer(total) if customer_view else total,
           "rows": [row_view(i, rec, names, customer_view) for i, rec in rows],
           "next": f"{rows[-1][1].created_at!r},{rows[-1][0]}" if more else None}
    return out


CSV_COLUMNS = ("request_id", "time", "customer", "key", "model", "provider", "deployment",
               "surface", "stream", "status", "http_status", *TOKEN_PARTS,
               "reasoning_tokens", "cost_usd", "price_usd", "margin_usd", "latency_ms",
               "ttft_ms", "error")


async def ledger_csv(app: "App", f: LedgerFilter, customer_view: bool) -> str:
    names = await id_names(app)
    columns = [c for c in CSV_COLUMNS if not customer_view or c not in
               ("provider", "deployment", "cost_usd", "margin_usd")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row_id, rec in await app.store.ledger_rows(f):
        item = row_view(row_id, rec, names, customer_view)
        writer.writerow(["" if item.get(c) is None else item[c] for c in columns])
    return out.getvalue()


class Rollup:
    """A store as ``metering.reports`` reads it, summed from usage_daily: whole months
    give the same numbers as the rows (``test_speed`` compares), from a few rows a day."""

    def __init__(self, store) -> None:
        self.store = store

    async def usage_summary(self, *, customer_id=None, key_id=None, since=None, until=None,
                            by=()) -> list[dict]:
        return await self.store.ledger_summary(
            LedgerFilter(customer_id=customer_id, key_id=key_id, since=since, until=until),
            list(by))

    async def get_customer(self, name: str):
        return await self.store.get_customer(name)


# ---- spend against budgets ---------------------------------------------------------------

async def spend(app: "App", customer_id: int | None, now: float | None = None) -> list[dict]:
    """Each customer (or the one) with its keys: spend this month and in all, and each
    key's spend in its budget's current window against the budget."""
    now = time.time() if now is None else now
    store = app.store
    month = month_start(now)
    f_all = LedgerFilter(customer_id=customer_id)
    all_time = {r["key"]: r["price_pico"] for r in await store.ledger_summary(f_all, ["key"])}
    this_month = await store.ledger_summary(LedgerFilter(customer_id=customer_id,
                                                         since=month), ["key", "day"])
    customers = [c for c in await store.list_customers()
                 if customer_id is None or c.id == customer_id]
    keys = await store.list_keys(customer_id=customer_id, include_revoked=True)
    out = []
    for c in customers:
        own = [k for k in keys if k.customer_id == c.id]
        views = [_key_spend(k, all_time, this_month, now) for k in own]
        month_pico = sum(r["price_pico"] for r in this_month
                         if r["key"] in {k.id for k in own})
        total_pico = sum(all_time.get(k.id, 0) for k in own)
        out.append({"id": c.id, "name": c.name, "rpm": c.rpm, "tpm": c.tpm,
                    "month_pico": month_pico, "month_usd": format_usd(month_pico),
                    "total_pico": total_pico, "total_usd": format_usd(total_pico),
                    "keys": views})
    return out


def _key_spend(key, all_time: dict, this_month: list[dict], now: float) -> dict:
    from modelmart.tenancy.accounts import key_view

    view = key_view(key)
    view["spent_total_pico"] = all_time.get(key.id, 0)
    view["spent_month_pico"] = sum(r["price_pico"] for r in this_month if r["key"] == key.id)
    view["spent_total_usd"] = format_usd(view["spent_total_pico"])
    view["spent_month_usd"] = format_usd(view["spent_month_pico"])
    view["budget_pico"] = key.budget_pico
    if key.budget_pico is not None:
        window = budget_window(key.budget_period or "total", now)
        if window.start is None:
            spent = all_time.get(key.id, 0)
        else:
            first = int(window.start // DAY)
            spent = sum(r["price_pico"] for r in this_month
                        if r["key"] == key.id and r["day"] >= first)
        view["budget_spent_pico"] = spent
        view["budget_spent_usd"] = format_usd(spent)
        view["budget_used"] = round(spent / key.budget_pico, 6)
    return view
