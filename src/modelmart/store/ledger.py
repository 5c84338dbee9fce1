"""The ledger filtered and summed for the console and the admin API: by customer, key,
model, provider, status and time, from the raw ``usage`` rows or from ``usage_daily``.

``usage_daily`` (migration 0003) holds the ledger summed per UTC day; a window of whole
days is summed from it, which reads a few rows per day instead of every request. A window
that starts or ends inside a day is summed from ``usage`` (its index on ``created_at``
bounds the scan). Both give the same numbers: the trigger that fills ``usage_daily`` adds
exactly the rows that ``usage`` gains.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelmart.store.queries import TOKEN_FIELDS, Dialect
from modelmart.store.rows import USAGE_SELECT

DAY = 86400
HOUR = 3600

# group name → column of usage_daily; "day" is the UTC day number (epoch seconds // 86400)
DAILY_GROUPS = {"day": "day", "customer": "customer_id", "key": "key_id", "model": "model",
                "provider": "provider", "status": "status"}
RAW_COLUMNS = {"customer": "customer_id", "key": "key_id", "model": "model",
               "provider": "provider", "status": "status", "deployment": "deployment"}
SUMS = ("requests", *TOKEN_FIELDS, "cost_pico", "price_pico")


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Which ledger rows: each field set narrows it; ``since`` inclusive, ``until``
    exclusive (epoch seconds)."""

    customer_id: int | None = None
    key_id: int | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def whole_days(self) -> bool:
        return all(t is None or t % DAY == 0 for t in (self.since, self.until))

    def raw_where(self) -> tuple[str, list]:
        conds, params = [], []
        for column, value in (("customer_id", self.customer_id), ("key_id", self.key_id),
                              ("model", self.model), ("provider", self.provider),
                              ("status", self.status)):
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            conds.append("created_at >= ?")
            params.append(self.since)
        if self.until is not None:
            conds.append("created_at < ?")
            params.append(self.until)
        return (" WHERE " + " AND ".join(conds) if conds else ""), params

    def daily_where(self) -> tuple[str, list]:
        """Only for ``whole_days`` filters. NULLs are stored as 0 and '' in usage_daily."""
        conds, params = [], []
        for column, value in (("customer_id", self.customer_id), ("key_id", self.key_id),
                              ("model", self.model), ("provider", self.provider),
                              ("status", self.status)):
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            conds.append("day >= ?")
            params.append(int(self.since // DAY))
        if self.until is not None:
            conds.append("day < ?")
            params.append(int(self.until // DAY))
        return (" WHERE " + " AND ".join(conds) if conds else ""), params


def daily_summary_sql(dialect: Dialect, f: LedgerFilter, by: list[str]) -> tuple[str, list]:
    groups = [DAILY_GROUPS[b] for b in by]
    sums = ["SUM(requests)", *(f"SUM({t})" for t in TOKEN_FIELDS),
            f"{dialect.money_sum}(cost_pico)", f"{dialect.money_sum}(price_pico)"]
    clause, params = f.daily_where()
    sql = f"SELECT {', '.join([*groups, *sums])} FROM usage_daily{clause}"
    if groups:
        sql += " GROUP BY " + ", ".join(str(i) for i in range(1, len(groups) + 1))
    return sql, params


def raw_summary_sql(dialect: Dialect, f: LedgerFilter, by: list[str]) -> tuple[str, list]:
    groups = [dialect.bucket.format(seconds=DAY if b == "day" else HOUR) if b in ("day", "hour")
              else RAW_COLUMNS[b] for b in by]
    sums = ["COUNT(*)", *(f"SUM({t})" for t in TOKEN_FIELDS),
            f"{dialect.money_sum}(cost_pico)", f"{dialect.money_sum}(price_pico)"]
    clause, params = f.raw_where()
    sql = f"SELECT {', '.join([*groups, *sums])} FROM usage{clause}"
    if groups:
        sql += " GROUP BY " + ", ".join(str(i) for i in range(1, len(groups) + 1))
    return sql, params


def summary_rows(by: list[str], rows) -> list[dict]:
    """Rows → dicts of Python ints; the 0 and '' that usage_daily stores for NULL → None."""
    out = []
    for row in rows:
        item = {b: (None if v in (0, "") and b in ("customer", "key", "provider") else v)
                for b, v in zip(by, row[: len(by)])}
        values = [int(v or 0) for v in row[len(by):]]
        if values[0] == 0:
            continue  # no rows at all: an empty summary, not a row of zeros
        item.update(zip(SUMS, values))
        item["margin_pico"] = item["price_pico"] - item["cost_pico"]
        out.append(item)
    return out


def merge(rows: list[dict], by: list[str]) -> list[dict]:
    """Adds up rows of the same group (a window summed in parts)."""
    merged: dict[tuple, dict] = {}
    for row in rows:
        ident = tuple(row[b] for b in by)
        slot = merged.get(ident)
        if slot is None:
            merged[ident] = dict(row)
        else:
            for name in (*SUMS, "margin_pico"):
                slot[name] += row[name]
    return list(merged.values())


def split_days(f: LedgerFilter) -> tuple[list[LedgerFilter], LedgerFilter | None]:
    """(parts to sum from raw rows, the part of whole days to sum from usage_daily)."""
    if f.whole_days:
        return [], f
    first = None if f.since is None else -(-f.since // DAY) * DAY  # ceil to a day
    last = None if f.until is None else (f.until // DAY) * DAY
    if first is not None and last is not None and first >= last:
        return [f], None  # inside one day (or across one midnight only)
    raw = []
    if first is not None and first != f.since:
        raw.append(replace(f, until=first))
    if last is not None and last != f.until:
        raw.append(replace(f, since=last))
    return raw, replace(f, since=first, until=last)


def page_sql(f: LedgerFilter, limit: int, before: tuple[float, int] | None) -> tuple[str, list]:
    """Newest rows first; ``before`` (created_at, id) of the last row shown continues."""
    clause, params = f.raw_where()
    if before is not None:
        clause += (" AND " if clause else " WHERE ") + \
            "(created_at < ? OR (created_at = ? AND id < ?))"
        params += [before[0], before[0], before[1]]
    return (f"SELECT id, {USAGE_SELECT} FROM usage{clause} "
            f"ORDER BY created_at DESC, id DESC LIMIT {int(limit)}", params)


def export_sql(f: LedgerFilter) -> tuple[str, list]:
    clause, params = f.raw_where()
    return f"SELECT id, {USAGE_SELECT} FROM usage{clause} ORDER BY created_at, id", params
