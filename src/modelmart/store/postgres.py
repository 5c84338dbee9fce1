"""PostgreSQL backend (asyncpg pool): several replicas share one database."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import asyncpg

from modelmart.store import queries as q
from modelmart.store import rows as r
from modelmart.store.base import SqlStore
from modelmart.store.errors import Conflict, NotFoundInStore, StoreError, StoreUnavailable
from modelmart.store.migrations import MIGRATIONS, SCHEMA_MIGRATIONS_DDL, render
from modelmart.store.records import ApiKey, Customer

# Any fixed number works; every modelmart process takes the same one while migrating.
MIGRATION_LOCK = 0x6D6D_6967  # "mmig"

# asyncpg array types for the usage columns, in USAGE_COLUMNS order: one INSERT ... SELECT
# FROM unnest(arrays) writes a whole batch in a single round trip and reports its row count.
USAGE_ARRAY_TYPES = (
    "text", "float8", "int8", "int8", "text", "text", "text", "text", "bool", "text",
    "int8", "int8", "int8", "int8", "int8", "int8", "int8", "float8", "float8", "int8",
    "int8", "text", "text",
)
_unnest = ", ".join(f"${i}::{t}[]" for i, t in enumerate(USAGE_ARRAY_TYPES, start=1))
_cols = [f"c{i}" for i in range(len(r.USAGE_COLUMNS))]
INSERT_USAGE = (
    f"INSERT INTO usage ({r.USAGE_SELECT}) "
    f"SELECT {', '.join(_cols[:-1])}, {_cols[-1]}::jsonb "
    f"FROM unnest({_unnest}) AS t({', '.join(_cols)}) "
    "ON CONFLICT (request_id) DO NOTHING"
)


# The database is out of reach, not the query wrong: refused or reset connections, a server
# shutting down or starting up, too many connections, no connection free in time.
UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
               asyncpg.exceptions.OperatorInterventionError,
               asyncpg.exceptions.TooManyConnectionsError)
ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a pooled connection before a 503


def _unavailable(err: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL is unavailable: {type(err).__name__}: {err}"[:500])


class _Connection:
    """A pooled connection whose use raises ``StoreUnavailable`` when PostgreSQL is gone."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._acquiring = pool.acquire(timeout=ACQUIRE_TIMEOUT)

    async def __aenter__(self):
        try:
            return await self._acquiring.__aenter__()
        except UNAVAILABLE as err:
            raise _unavailable(err) from err

    async def __aexit__(self, kind, err, tb):
        try:
            await self._acquiring.__aexit__(kind, err, tb)
        except UNAVAILABLE as exc:  # releasing a broken connection
            raise _unavailable(exc) from exc
        if err is not None and isinstance(err, UNAVAILABLE):
            raise _unavailable(err) from err
        return False


class _GuardedPool:
    """The asyncpg pool, as the store uses it, with an outage raised as ``StoreUnavailable``
    (the admin API's 503) and a bounded wait for a connection."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def acquire(self) -> _Connection:
        return _Connection(self.pool)

    async def _run(self, method: str, *args):
        async with self.acquire() as conn:
            return await getattr(conn, method)(*args)

    async def fetch(self, sql: str, *args):
        return await self._run("fetch", sql, *args)

    async def fetchrow(self, sql: str, *args):
        return await self._run("fetchrow", sql, *args)

    async def fetchval(self, sql: str, *args):
        return await self._run("fetchval", sql, *args)

    async def execute(self, sql: str, *args):
        return await self._run("execute", sql, *args)

    async def close(self) -> None:
        await self.pool.close()


def _key_conflict(err: Exception, key: ApiKey) -> Conflict:
    if "aws_access_key_id" in str(getattr(err, "constraint_name", "") or err):
        return Conflict(f"aws access key id {key.aws_access_key_id!r} is already in use")
    return Conflict(f"a key with this secret already exists (prefix {key.prefix!r})")


class PostgresStore(SqlStore):
    sql_dialect = q.POSTGRES

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = _GuardedPool(pool)

    @classmethod
    async def connect(cls, url: str) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
        except (OSError, asyncpg.PostgresError) as err:
            raise StoreError(f"cannot connect to PostgreSQL: {err}") from err
        return cls(pool)

    async def _all(self, sql: str, params=()) -> list:
        return await self._pool.fetch(q.numbered(sql), *params)

    async def _one(self, sql: str, params=()):
        return await self._pool.fetchrow(q.numbered(sql), *params)

    async def _execute(self, sql: str, params=(), bump: bool = False) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(q.numbered(sql), *params)
            changed = int(status.rsplit(" ", 1)[1])  # "UPDATE 1", "INSERT 0 1"
            if bump and changed:
                await conn.execute(q.BUMP_COUNTER)
        return changed

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate_schema(self) -> list[str]:
        async with self._pool.acquire() as conn, conn.transaction():
            # Transaction-scoped: released on commit or rollback, even if we crash.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(render(SCHEMA_MIGRATIONS_DDL, "postgres"))
            done = {row[0] for row in await conn.fetch("SELECT name FROM schema_migrations")}
            applied = []
            for migration in MIGRATIONS:
                if migration.name in done:
                    continue
                for statement in migration.render("postgres"):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (name, applied_at) "
                                   "VALUES ($1, $2)", migration.name, time.time())
                applied.append(migration.name)
            return applied

    # customers
    async def create_customer(self, name, *, rpm=None, tpm=None) -> Customer:
        now = time.time()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                new_id = await conn.fetchval(
                    "INSERT INTO customers (name, created_at, rpm, tpm) "
                    "VALUES ($1, $2, $3, $4) RETURNING id", name, now, rpm, tpm)
                await conn.execute(q.BUMP_COUNTER)
        except asyncpg.UniqueViolationError as err:
            raise Conflict(f"customer {name!r} already exists") from err
        return Customer(new_id, name, now, rpm, tpm)

    # keys
    async def create_key(self, key: ApiKey) -> ApiKey:
        cols = ", ".join(r.KEY_COLUMNS)
        marks = ", ".join(f"${i}" for i in range(1, len(r.KEY_COLUMNS) + 1))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                new_id = await conn.fetchval(
                    f"INSERT INTO api_keys ({cols}) VALUES ({marks}) RETURNING id",
                    *r.key_to_row(key))
                await conn.execute(q.BUMP_COUNTER)
        except asyncpg.ForeignKeyViolationError as err:
            raise NotFoundInStore(f"customer {key.customer_id} does not exist") from err
        except asyncpg.UniqueViolationError as err:
            raise _key_conflict(err, key) from err
        return replace(key, id=new_id)

    async def revoke_key(self, id) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute("UPDATE api_keys SET revoked_at = $1 "
                                        "WHERE id = $2 AND revoked_at IS NULL", time.time(), id)
            changed = status != "UPDATE 0"
            if changed:
                await conn.execute(q.BUMP_COUNTER)
        return changed

    async def replace_aws_secret(self, id, old, new) -> bool:
        status = await self._pool.execute("UPDATE api_keys SET aws_secret = $1 "
                                          "WHERE id = $2 AND aws_secret = $3", new, id, old)
        return status != "UPDATE 0"

    async def change_counter(self) -> int:
        return await self._pool.fetchval(q.READ_COUNTER)

    # ledger
    async def insert_usage_rows(self, rows: list[tuple]) -> int:
        if not rows:
            return 0
        columns = list(zip(*rows))
        status = await self._pool.execute(INSERT_USAGE, *columns)
        return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"
