"""SQLite backend: the default, nothing to install.

Why sqlite3 on one dedicated thread rather than aiosqlite: a whole transaction runs as one
plain function on that thread, so the write lock is held only for the SQL itself, never
across event-loop turns (other processes — gateway workers, the CLI — wait on that lock);
and the stdlib connection gives us ``create_aggregate`` for exact money sums directly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

from modelmart.store import queries as q
from modelmart.store.base import Store
from modelmart.store.errors import Conflict, NotFoundInStore, StoreError
from modelmart.store.migrations import MIGRATIONS, SCHEMA_MIGRATIONS_DDL, render
from modelmart.store.records import ApiKey, Customer, UsageRecord
from modelmart.store import rows as r

BUSY_TIMEOUT_S = 30.0  # writers from other processes hold the lock for milliseconds


class ExactSum:
    """SUM without overflow: Python ints accumulate; TEXT out because SQLite has no bigint."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += int(value)

    def finalize(self) -> str:
        return str(self.total)


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is taken
    # up front and a busy database waits (busy_timeout) instead of failing mid-transaction.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
    conn.execute("PRAGMA synchronous = NORMAL")  # durable across process kills in WAL mode
    conn.execute("PRAGMA foreign_keys = ON")
    conn.create_aggregate("exact_sum", 1, ExactSum)
    return conn


def _in_transaction(conn: sqlite3.Connection, fn: Callable, *args) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _key_conflict(err: Exception, key: ApiKey) -> Conflict:
    if "aws_access_key_id" in str(err):
        return Conflict(f"aws access key id {key.aws_access_key_id!r} is already in use")
    return Conflict(f"a key with this secret already exists (prefix {key.prefix!r})")


class SqliteStore(Store):
    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn

    @classmethod
    async def connect(cls, path: str) -> SqliteStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelmart-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except sqlite3.Error as err:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open SQLite database {path!r}: {err}") from err
        return cls(executor, conn)

    async def _run(self, fn: Callable, *args) -> Any:
        """Runs ``fn(conn, *args)`` on the connection's thread.

        If the caller is cancelled the function still runs to its end: a transaction is
        never cut in half, and a retried insert_usage is harmless (idempotent request ids).
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn, *args)

    async def _write(self, fn: Callable, *args) -> Any:
        return await self._run(_in_transaction, fn, *args)

    async def _all(self, sql: str, params: Any = ()) -> list:
        return await self._run(lambda c: c.execute(sql, params).fetchall())

    async def _one(self, sql: str, params: Any = ()) -> Any:
        return await self._run(lambda c: c.execute(sql, params).fetchone())

    async def close(self) -> None:
        if self._conn is None:
            return
        await self._run(lambda c: c.close())
        self._conn = None
        self._executor.shutdown(wait=True)

    async def migrate(self) -> list[str]:
        return await self._write(_apply_migrations)

    # customers
    async def create_customer(self, name, *, rpm=None, tpm=None) -> Customer:
        def insert(conn):
            cur = conn.execute("INSERT INTO customers (name, created_at, rpm, tpm) "
                               "VALUES (?, ?, ?, ?)", (name, now, rpm, tpm))
            conn.execute(q.BUMP_COUNTER)
            return cur.lastrowid

        now = time.time()
        try:
            new_id = await self._write(insert)
        except sqlite3.IntegrityError as err:
            raise Conflict(f"customer {name!r} already exists") from err
        return Customer(new_id, name, now, rpm, tpm)

    async def _customer_where(self, cond: str, value) -> Customer | None:
        row = await self._one(f"SELECT {', '.join(r.CUSTOMER_COLUMNS)} FROM customers "
                              f"WHERE {cond}", (value,))
        return r.customer_from_row(row) if row else None

    async def get_customer(self, name) -> Customer | None:
        return await self._customer_where("name = ?", name)

    async def get_customer_by_id(self, id) -> Customer | None:
        return await self._customer_where("id = ?", id)

    async def list_customers(self) -> list[Customer]:
        rows = await self._all(f"SELECT {', '.join(r.CUSTOMER_COLUMNS)} FROM customers "
                               "ORDER BY id")
        return [r.customer_from_row(row) for row in rows]

    # keys
    async def create_key(self, key: ApiKey) -> ApiKey:
        def insert(conn):
            if key.customer_id is not None and not conn.execute(
                    "SELECT 1 FROM customers WHERE id = ?", (key.customer_id,)).fetchone():
                raise NotFoundInStore(f"customer {key.customer_id} does not exist")
            cols = ", ".join(r.KEY_COLUMNS)
            marks = ", ".join("?" * len(r.KEY_COLUMNS))
            cur = conn.execute(f"INSERT INTO api_keys ({cols}) VALUES ({marks})",
                               r.key_to_row(key))
            conn.execute(q.BUMP_COUNTER)
            return cur.lastrowid

        try:
            new_id = await self._write(insert)
        except sqlite3.IntegrityError as err:
            raise _key_conflict(err, key) from err
        return replace(key, id=new_id)

    async def get_key(self, id) -> ApiKey | None:
        row = await self._one(f"SELECT {r.KEY_SELECT} FROM {r.KEY_FROM} WHERE k.id = ?", (id,))
        return r.key_from_row(row) if row else None

    async def list_keys(self, customer_id=None, include_revoked=False) -> list[ApiKey]:
        sql, params = q.keys_sql(customer_id, include_revoked)
        return [r.key_from_row(row) for row in await self._all(sql, params)]

    async def revoke_key(self, id) -> bool:
        def update(conn):
            cur = conn.execute("UPDATE api_keys SET revoked_at = ? "
                               "WHERE id = ? AND revoked_at IS NULL", (time.time(), id))
            if cur.rowcount:
                conn.execute(q.BUMP_COUNTER)
            return cur.rowcount > 0

        return await self._write(update)

    async def active_keys(self) -> list[ApiKey]:
        return await self.list_keys()

    async def change_counter(self) -> int:
        return (await self._one(q.READ_COUNTER))[0]

    # ledger
    async def insert_usage(self, records: list[UsageRecord]) -> int:
        if not records:
            return 0

        def insert(conn):
            before = conn.total_changes
            conn.executemany(INSERT_USAGE, map(r.usage_to_row, records))
            return conn.total_changes - before

        return await self._write(insert)

    async def get_usage(self, request_id) -> UsageRecord | None:
        row = await self._one(f"SELECT {r.USAGE_SELECT} FROM usage WHERE request_id = ?",
                              (request_id,))
        return r.usage_from_row(row) if row else None

    async def count_usage(self) -> int:
        return (await self._one("SELECT COUNT(*) FROM usage"))[0]

    # reports
    async def usage_summary(self, *, customer_id=None, key_id=None, since=None, until=None,
                            by=[]) -> list[dict]:
        sql, params = q.summary_sql(q.SQLITE, list(by), customer_id=customer_id,
                                    key_id=key_id, since=since, until=until)
        return q.summary_rows(list(by), await self._all(sql, params))

    async def usage_rows(self, *, customer_id=None, since=None, until=None) -> list[UsageRecord]:
        sql, params = q.usage_rows_sql(customer_id=customer_id, since=since, until=until)
        return [r.usage_from_row(row) for row in await self._all(sql, params)]

    async def spent(self, key_id=None, customer_id=None, since=None) -> int:
        sql, params = q.spent_sql(q.SQLITE, key_id=key_id, customer_id=customer_id,
                                  since=since)
        return int((await self._one(sql, params))[0] or 0)


# ON CONFLICT (request_id) rather than INSERT OR IGNORE: OR IGNORE would also silently drop
# rows that break NOT NULL, and a malformed ledger row must fail loudly, not vanish.
INSERT_USAGE = (
    f"INSERT INTO usage ({r.USAGE_SELECT}) VALUES ({', '.join('?' * len(r.USAGE_COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)


def _apply_migrations(conn: sqlite3.Connection) -> list[str]:
    """Runs inside BEGIN IMMEDIATE, so concurrent starters apply each migration once."""
    conn.execute(render(SCHEMA_MIGRATIONS_DDL, "sqlite"))
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.name in done:
            continue
        for statement in migration.render("sqlite"):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                     (migration.name, time.time()))
        applied.append(migration.name)
    return applied
