"""SQLite backend: the default, nothing to install.

Why sqlite3 on one dedicated thread rather than aiosqlite: a whole transaction runs as one
plain function on that thread, so the write lock is held only for the SQL itself, never
across event-loop turns (other processes — gateway workers, the CLI — wait on that lock);
and the stdlib connection gives us ``create_aggregate`` for exact money sums directly.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

from modelmart.store import queries as q
from modelmart.store.base import SqlStore
from modelmart.store.errors import Conflict, NotFoundInStore, StoreError
from modelmart.store.files import private_sqlite_file
from modelmart.store.migrations import MIGRATIONS, SCHEMA_MIGRATIONS_DDL, render
from modelmart.store.records import ApiKey, Customer
from modelmart.store import rows as r

BUSY_TIMEOUT_S = 30.0  # writers from other processes hold the lock for milliseconds


class ExactSum:
    """SUM without overflow: Python ints accumulate; TEXT out because SQLite has no bigint.

    A REAL is refused (the query fails): SQLite turns an integer sum that overflows into a
    REAL, which usage_daily's trigger can do past 2^63 picodollars in one of its rows; the
    reader then sums those days from the ledger's rows instead (``ledger_summary``)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: Any) -> None:
        if value is not None:
            if type(value) is float:
                raise OverflowError("an amount of money stored as a REAL")
            self.total += int(value)

    def finalize(self) -> str:
        return str(self.total)


def _connect(path: str) -> sqlite3.Connection:
    private_sqlite_file(path)  # before SQLite creates it, or its -wal and -shm, world-readable
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is taken
    # up front and a busy database waits (busy_timeout) instead of failing mid-transaction.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _enable_wal(conn)  # readers never block the writer
    conn.execute("PRAGMA synchronous = NORMAL")  # durable across process kills in WAL mode
    conn.execute("PRAGMA foreign_keys = ON")
    conn.create_aggregate("exact_sum", 1, ExactSum)
    return conn


def _enable_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switching to WAL takes an exclusive lock for which SQLite does not always call the
    busy handler: several processes opening a new database at once can see "database is
    locked". WAL is persistent, so once any of them has switched, the rest only read it."""
    for attempt in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


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


class SqliteStore(SqlStore):
    sql_dialect = q.SQLITE
    rollup_overflow = (sqlite3.DatabaseError,)  # ExactSum met a REAL in usage_daily

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection,
                 path: str = "") -> None:
        self._executor = executor
        self._conn = conn
        self.path = path
        if path not in ("", ":memory:"):
            key_file = os.path.splitext(path)[0] + ".key"  # modelmart.db → modelmart.key
            self.local_key_file = key_file if key_file != path else path + ".key"

    @classmethod
    async def connect(cls, path: str) -> SqliteStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelmart-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except (sqlite3.Error, OSError) as err:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open SQLite database {path!r}: {err}") from err
        return cls(executor, conn, path)

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

    async def _execute(self, sql: str, params: Any = (), bump: bool = False) -> int:
        def write(conn):
            changed = conn.execute(sql, params).rowcount
            if bump and changed:
                conn.execute(q.BUMP_COUNTER)
            return changed

        return await self._write(write)

    async def close(self) -> None:
        if self._conn is None:
            return
        await self._run(lambda c: c.close())
        self._conn = None
        self._executor.shutdown(wait=True)

    async def _migrate_schema(self) -> list[str]:
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

    async def revoke_key(self, id) -> bool:
        def update(conn):
            cur = conn.execute("UPDATE api_keys SET revoked_at = ? "
                               "WHERE id = ? AND revoked_at IS NULL", (time.time(), id))
            if cur.rowcount:
                conn.execute(q.BUMP_COUNTER)
            return cur.rowcount > 0

        return await self._write(update)

    async def replace_aws_secret(self, id, old, new) -> bool:
        def update(conn):
            return conn.execute("UPDATE api_keys SET aws_secret = ? WHERE id = ? AND "
                                "aws_secret = ?", (new, id, old)).rowcount > 0

        return await self._write(update)

    async def change_counter(self) -> int:
        return (await self._one(q.READ_COUNTER))[0]

    # ledger
    async def insert_usage_rows(self, rows: list[tuple]) -> int:
        """``insert_usage`` of rows already made (``rows.usage_to_row``), e.g. from journal
        lines by the ledger writer."""
        if not rows:
            return 0

        def insert(conn):
            done = added = 0
            for size in _USAGE_CHUNKS:
                while len(rows) - done >= size:
                    params = []
                    for row in rows[done:done + size]:
                        params.extend(row)
                    # rowcount, not total_changes: usage_daily's trigger writes count there
                    added += conn.execute(_insert_usage(size), params).rowcount
                    done += size
            return added

        return await self._write(insert)


# Many rows a statement: sqlite3 lets go of the GIL around each statement step, and takes it
# back after; executemany steps once per row, so the writer thread and the event loop traded
# the GIL twice per row, which cost the loop ~40 µs a request under load. Fixed chunk sizes
# keep the prepared statements few (sqlite3 caches them); 256 rows × 23 columns stays under
# SQLite's 32,766 variables.
_USAGE_CHUNKS = (256, 64, 16, 4, 1)


@functools.lru_cache(maxsize=None)
def _insert_usage(rows: int) -> str:
    # ON CONFLICT (request_id) rather than INSERT OR IGNORE: OR IGNORE would also silently
    # drop rows that break NOT NULL, and a malformed ledger row must fail loudly, not vanish.
    one = "(" + ", ".join("?" * len(r.USAGE_COLUMNS)) + ")"
    return (f"INSERT INTO usage ({r.USAGE_SELECT}) VALUES {', '.join([one] * rows)} "
            "ON CONFLICT (request_id) DO NOTHING")


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
