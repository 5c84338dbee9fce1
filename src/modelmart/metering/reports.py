"""Monthly customer statements, margin reports and usage summaries from the ledger.

Money stays exact: raw picodollar ints next to decimal strings from ``core.money.format_usd``.
Periods are calendar months in UTC, start inclusive, end exclusive (the store's rule).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.core.money import format_usd

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens")


# Ledger rows for requests that were refused or failed before any token was generated:
# kept for the audit trail, left out of what a customer is shown as billed requests.
UNBILLED = frozenset({"refused", "error"})
_SUMS = ("requests", *TOKEN_FIELDS, "cost_pico", "price_pico", "margin_pico")


async def billed_summary(store: Any, group: list[str], **window) -> list[dict]:
    """``usage_summary`` by ``group`` without the unbilled rows."""
    merged: dict[tuple, dict] = {}
    for row in await store.usage_summary(**window, by=[*group, "status"]):
        if row["status"] in UNBILLED and not row["price_pico"]:
            continue
        ident = tuple(row[g] for g in group)
        slot = merged.setdefault(ident, {**{g: row[g] for g in group}, **{f: 0 for f in _SUMS}})
        for f in _SUMS:
            slot[f] += row[f]
    return list(merged.values())


_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_bounds(month: str) -> tuple[float, float]:
    """``YYYY-MM`` → (first instant, first instant of the next month), epoch seconds UTC."""
    m = _MONTH.match(month or "")
    if not m:
        raise InvalidRequest(f"month must be written YYYY-MM, got {month!r}", param="month")
    year, mon = int(m.group(1)), int(m.group(2))
    if not (1970 <= year <= 9998 and 1 <= mon <= 12):  # datetime's range, and the admin API's
        raise InvalidRequest(f"month must be from 1970-01 to 9998-12, got {month!r}",
                             param="month")
    start = dt.datetime(year, mon, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return start.timestamp(), end.timestamp()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class StatementLine:
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    price_pico: int

    def to_dict(self) -> dict:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["price_usd"] = format_usd(self.price_pico)
        return data


@dataclass(slots=True)
class Statement:
    customer: str
    customer_id: int
    month: str
    period_start: float
    period_end: float
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def total(self) -> StatementLine:
        sums = {f: sum(getattr(line, f) for line in self.lines)
                for f in ("requests", *TOKEN_FIELDS, "price_pico")}
        return StatementLine(model="TOTAL", **sums)

    @property
    def total_pico(self) -> int:
        return sum(line.price_pico for line in self.lines)

    def to_dict(self) -> dict:
        return {
            "customer": self.customer,
            "customer_id": self.customer_id,
            "month": self.month,
            "period": {"start": _iso(self.period_start), "end": _iso(self.period_end)},
            "lines": [line.to_dict() for line in self.lines],
            "total": self.total.to_dict(),
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["model", "requests", *TOKEN_FIELDS, "price_usd"])
        for line in [*self.lines, self.total]:
            writer.writerow([line.model, line.requests, *(getattr(line, f) for f in TOKEN_FIELDS),
                             format_usd(line.price_pico)])
        return out.getvalue()


async def statement(store: Any, customer_name: str, month: str) -> Statement:
    """One customer's charges for a calendar month, a line per model."""
    start, end = month_bounds(month)
    customer = await store.get_customer(customer_name)
    if customer is None:
        raise NotFound(f"no customer named {customer_name!r}", param="customer")
    rows = await billed_summary(store, ["model"], customer_id=customer.id, since=start,
                                until=end)
    lines = [StatementLine(model=r["model"], requests=r["requests"],
                           **{f: r[f] for f in TOKEN_FIELDS}, price_pico=r["price_pico"])
             for r in rows]
    return Statement(customer.name, customer.id, month, start, end, lines)


def margin_pct(revenue_pico: int, margin_pico: int) -> str | None:
    """Margin as a percentage of revenue, two places; None when there was no revenue."""
    if revenue_pico == 0:
        return None
    pct = Decimal(margin_pico * 100) / Decimal(revenue_pico)
    return str(pct.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _margin_row(row: dict, group: str | None) -> dict:
    out = {group: row[group]} if group else {}
    out["requests"] = row["requests"]
    for name, pico in (("revenue", row["price_pico"]), ("cost", row["cost_pico"]),
                       ("margin", row["price_pico"] - row["cost_pico"])):
        out[f"{name}_pico"] = pico
        out[f"{name}_usd"] = format_usd(pico)
    out["margin_pct"] = margin_pct(row["price_pico"], out["margin_pico"])
    return out


async def margins(store: Any, month: str) -> dict:
    """Revenue (customer price), provider cost and margin per provider and per model."""
    start, end = month_bounds(month)
    window = {"since": start, "until": end}
    totals = await billed_summary(store, [], **window)
    empty = {"requests": 0, "price_pico": 0, "cost_pico": 0}
    return {
        "month": month,
        "period": {"start": _iso(start), "end": _iso(end)},
        "by_provider": [_margin_row(r, "provider")
                        for r in await billed_summary(store, ["provider"], **window)],
        "by_model": [_margin_row(r, "model")
                     for r in await billed_summary(store, ["model"], **window)],
        "total": _margin_row(totals[0] if totals else empty, None),
    }


async def usage(store: Any, customer_id: int | None = None, since: float | None = None,
                until: float | None = None, by: list[str] | tuple[str, ...] = ("model",)
                ) -> list[dict]:
    """The store's usage summary with each money sum also as a decimal USD string."""
    rows = await store.usage_summary(customer_id=customer_id, since=since, until=until,
                                     by=list(by))
    for row in rows:
        for name in ("cost", "price", "margin"):
            row[f"{name}_usd"] = format_usd(row[f"{name}_pico"])
    return rows
