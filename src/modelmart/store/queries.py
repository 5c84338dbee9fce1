"""SQL shared by both backends, written with ``?`` placeholders.

The PostgreSQL backend renumbers them to ``$1, $2, ...`` (``numbered``), so each query has one
text. Only the date bucketing and the exact money sum differ per backend (``Dialect``).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelmart.store.rows import KEY_FROM, KEY_SELECT, USAGE_SELECT

BUMP_COUNTER = "UPDATE change_counter SET value = value + 1 WHERE id = 1"
READ_COUNTER = "SELECT value FROM change_counter WHERE id = 1"

TOKEN_FIELDS = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens",
)
GROUP_COLUMNS = {
    "model": "model", "key": "key_id", "customer": "customer_id", "provider": "provider",
    "deployment": "deployment", "status": "status",
}
GROUPS = (*GROUP_COLUMNS, "day", "month")


@dataclass(frozen=True, slots=True)
class Dialect:
    day: str  # SQL for the UTC date of created_at, YYYY-MM-DD
    month: str  # YYYY-MM
    money_sum: str  # an aggregate that sums picodollars exactly, past 2^63
    bucket: str  # the number of the ``{seconds}``-long UTC period (hour, day) of created_at

    def group_expr(self, by: str) -> str:
        if by == "day":
            return self.day
        if by == "month":
            return self.month
        return GROUP_COLUMNS[by]


SQLITE = Dialect(
    day="strftime('%Y-%m-%d', created_at, 'unixepoch')",
    month="strftime('%Y-%m', created_at, 'unixepoch')",
    money_sum="exact_sum",
    bucket="CAST(created_at / {seconds} AS INTEGER)",
)
POSTGRES = Dialect(
    day="to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    month="to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM')",
    money_sum="SUM",  # SUM(bigint) is NUMERIC in PostgreSQL: exact, no overflow
    bucket="floor(created_at / {seconds})::bigint",
)


def numbered(sql: str) -> str:
    """``?`` placeholders → ``$1, $2, ...`` (our SQL has no literal question marks)."""
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


def where(*, customer_id=None, key_id=None, since=None, until=None) -> tuple[str, list]:
    """A WHERE clause over usage; ``since`` is inclusive, ``until`` exclusive."""
    conds, params = [], []
    for cond, value in (("customer_id = ?", customer_id), ("key_id = ?", key_id),
                        ("created_at >= ?", since), ("created_at < ?", until)):
        if value is not None:
            conds.append(cond)
            params.append(value)
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def summary_sql(dialect: Dialect, by: list[str], **filters) -> tuple[str, list]:
    unknown = [b for b in by if b not in GROUPS]
    if unknown:
        raise ValueError(f"cannot group usage by {unknown}; choose from {list(GROUPS)}")
    groups = [dialect.group_expr(b) for b in by]
    sums = [f"SUM({t})" for t in TOKEN_FIELDS]
    money = [f"{dialect.money_sum}({m})" for m in ("cost_pico", "price_pico")]
    clause, params = where(**filters)
    sql = f"SELECT {', '.join([*groups, 'COUNT(*)', *sums, *money])} FROM usage{clause}"
    if groups:
        sql += " GROUP BY " + ", ".join(str(i) for i in range(1, len(groups) + 1))
    return sql, params


def summary_rows(by: list[str], rows) -> list[dict]:
    """Database rows → dicts of Python ints, ordered by the group fields (NULLs last)."""
    out = []
    for row in rows:
        item = dict(zip(by, row[: len(by)]))
        count, *totals = row[len(by):]
        if count == 0:
            continue  # no grouping and no rows: an empty report, not a row of zeros
        item["requests"] = int(count)
        item.update(zip((*TOKEN_FIELDS, "cost_pico", "price_pico"),
                        (int(t or 0) for t in totals)))
        item["margin_pico"] = item["price_pico"] - item["cost_pico"]
        out.append(item)
    out.sort(key=lambda item: [(item[b] is None, item[b]) for b in by])
    return out


def spent_sql(dialect: Dialect, **filters) -> tuple[str, list]:
    clause, params = where(**filters)
    return f"SELECT {dialect.money_sum}(price_pico) FROM usage{clause}", params


def usage_rows_sql(**filters) -> tuple[str, list]:
    clause, params = where(**filters)
    return f"SELECT {USAGE_SELECT} FROM usage{clause} ORDER BY created_at, id", params


def keys_sql(customer_id: int | None, include_revoked: bool) -> tuple[str, list]:
    conds, params = [], []
    if customer_id is not None:
        conds.append("k.customer_id = ?")
        params.append(customer_id)
    if not include_revoked:
        conds.append("k.revoked_at IS NULL")
    clause = " WHERE " + " AND ".join(conds) if conds else ""
    return f"SELECT {KEY_SELECT} FROM {KEY_FROM}{clause} ORDER BY k.id", params
