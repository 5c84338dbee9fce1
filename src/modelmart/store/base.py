"""The abstract Store and ``open_store(url)``, which picks the backend from the URL."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from modelmart.store import ledger as lg
from modelmart.store import queries as q
from modelmart.store import rows as r
from modelmart.store import sessions as ss
from modelmart.store.errors import StoreError
from modelmart.store.records import ApiKey, Customer, UsageRecord

DEFAULT_URL = "sqlite:///modelmart.db"
URL_ENV = "MODELMART_DATABASE_URL"


class Store(ABC):
    """Tables for tenancy and the ledger. Every method is one short transaction."""

    # Where a server key is generated when none is configured (serverkey.py): beside a
    # SQLite file. None for a database that replicas share: they must be given one key.
    local_key_file: str | None = None

    async def migrate(self) -> list[str]:
        """Applies pending schema migrations under a lock, then encrypts AWS secrets left in
        plaintext by older versions (or sealed with a retired server key). Returns the
        names of the migrations applied now, and a line for the secrets if any were."""
        from modelmart.store.serverkey import encrypt_aws_secrets

        applied = await self._migrate_schema()
        encrypted = await encrypt_aws_secrets(self)
        if encrypted:
            applied.append(f"encrypted {encrypted} AWS secret(s)")
        return applied

    @abstractmethod
    async def _migrate_schema(self) -> list[str]:
        """Apply pending migrations under a lock; returns the names applied now."""

    @abstractmethod
    async def close(self) -> None: ...

    # customers
    @abstractmethod
    async def create_customer(self, name: str, *, rpm: int | None = None,
                              tpm: int | None = None) -> Customer: ...

    @abstractmethod
    async def get_customer(self, name: str) -> Customer | None: ...

    @abstractmethod
    async def get_customer_by_id(self, id: int) -> Customer | None: ...

    @abstractmethod
    async def list_customers(self) -> list[Customer]: ...

    # keys
    @abstractmethod
    async def create_key(self, key: ApiKey) -> ApiKey:
        """Stores ``key`` (its ``id`` is ignored) and returns a copy with the new id."""

    @abstractmethod
    async def get_key(self, id: int) -> ApiKey | None: ...

    @abstractmethod
    async def list_keys(self, customer_id: int | None = None,
                        include_revoked: bool = False) -> list[ApiKey]: ...

    @abstractmethod
    async def revoke_key(self, id: int) -> bool: ...

    @abstractmethod
    async def active_keys(self) -> list[ApiKey]: ...

    @abstractmethod
    async def stored_aws_secrets(self) -> list[tuple[int, str, str]]:
        """(key id, AWS access key id, stored secret) of every key with AWS credentials,
        revoked ones included."""

    @abstractmethod
    async def replace_aws_secret(self, id: int, old: str, new: str) -> bool:
        """Sets a key's stored AWS secret to ``new`` if it is still ``old``."""

    @abstractmethod
    async def change_counter(self) -> int:
        """Moves whenever a customer or key changes; cheap enough to poll twice a second."""

    # ledger
    async def insert_usage(self, records: list[UsageRecord]) -> int:
        """One transaction; rows whose request_id exists are skipped. Returns rows added."""
        return await self.insert_usage_rows([r.usage_to_row(rec) for rec in records])

    @abstractmethod
    async def insert_usage_rows(self, rows: list[tuple]) -> int:
        """``insert_usage`` of rows already made (``rows.usage_to_row``, or ``journal.row``
        from journal lines, as the ledger writer does)."""

    @abstractmethod
    async def get_usage(self, request_id: str) -> UsageRecord | None: ...

    @abstractmethod
    async def count_usage(self) -> int: ...

    # reports
    @abstractmethod
    async def usage_summary(self, *, customer_id: int | None = None, key_id: int | None = None,
                            since: float | None = None, until: float | None = None,
                            by: list[str] = []) -> list[dict]: ...

    @abstractmethod
    async def usage_rows(self, *, customer_id: int | None = None, since: float | None = None,
                         until: float | None = None) -> list[UsageRecord]: ...

    @abstractmethod
    async def spent(self, key_id: int | None = None, customer_id: int | None = None,
                    since: float | None = None) -> int:
        """Sum of price_pico, exact."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class SqlStore(Store):
    """The reads both SQL backends share: one query text (``?`` placeholders), run through
    the backend's ``_all`` and ``_one``. Writes stay in the backends: their transactions and
    the errors they raise differ."""

    sql_dialect: q.Dialect
    rollup_overflow: tuple[type[Exception], ...] = ()  # usage_daily cannot sum exactly

    @abstractmethod
    async def _all(self, sql: str, params=()) -> list: ...

    @abstractmethod
    async def _one(self, sql: str, params=()): ...

    @abstractmethod
    async def _execute(self, sql: str, params=(), bump: bool = False) -> int:
        """One write in its own transaction; returns the rows it changed. ``bump``: move
        the change counter too when it changed any (tenancy writes)."""

    # customers
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
    async def get_key(self, id) -> ApiKey | None:
        row = await self._one(f"SELECT {r.KEY_SELECT} FROM {r.KEY_FROM} WHERE k.id = ?", (id,))
        return r.key_from_row(row) if row else None

    async def list_keys(self, customer_id=None, include_revoked=False) -> list[ApiKey]:
        sql, params = q.keys_sql(customer_id, include_revoked)
        return [r.key_from_row(row) for row in await self._all(sql, params)]

    async def active_keys(self) -> list[ApiKey]:
        return await self.list_keys()

    async def stored_aws_secrets(self) -> list[tuple[int, str, str]]:
        rows = await self._all("SELECT id, aws_access_key_id, aws_secret FROM api_keys "
                               "WHERE aws_secret IS NOT NULL ORDER BY id")
        return [tuple(row) for row in rows]

    # ledger
    async def get_usage(self, request_id) -> UsageRecord | None:
        row = await self._one(f"SELECT {r.USAGE_SELECT} FROM usage WHERE request_id = ?",
                              (request_id,))
        return r.usage_from_row(row) if row else None

    async def count_usage(self) -> int:
        return (await self._one("SELECT COUNT(*) FROM usage"))[0]

    # reports
    async def usage_summary(self, *, customer_id=None, key_id=None, since=None, until=None,
                            by=[]) -> list[dict]:
        sql, params = q.summary_sql(self.sql_dialect, list(by), customer_id=customer_id,
                                    key_id=key_id, since=since, until=until)
        return q.summary_rows(list(by), await self._all(sql, params))

    async def usage_rows(self, *, customer_id=None, since=None, until=None) -> list[UsageRecord]:
        sql, params = q.usage_rows_sql(customer_id=customer_id, since=since, until=until)
        return [r.usage_from_row(row) for row in await self._all(sql, params)]

    async def spent(self, key_id=None, customer_id=None, since=None) -> int:
        sql, params = q.spent_sql(self.sql_dialect, key_id=key_id, customer_id=customer_id,
                                  since=since)
        return int((await self._one(sql, params))[0] or 0)

    # tenancy changes (each moves the change counter, so key caches reload)
    async def update_key(self, id: int, changes: dict) -> bool:
        """Sets columns of an active key (``rpm``, ``tpm``, ``models``, ``budget_pico``,
        ``budget_period``, ``name``); False if there is no such active key."""
        allowed = {"rpm", "tpm", "models", "budget_pico", "budget_period", "name"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"cannot update key columns {sorted(set(changes) - allowed)}")
        values = {c: (r.dump_json(v) if c == "models" else v) for c, v in changes.items()}
        sets = ", ".join(f"{c} = ?" for c in values)
        return await self._execute(
            f"UPDATE api_keys SET {sets} WHERE id = ? AND revoked_at IS NULL",
            [*values.values(), id], bump=True) > 0

    async def update_customer(self, id: int, changes: dict) -> bool:
        """Sets a customer's ``rpm`` and/or ``tpm`` (None: no limit)."""
        if not changes or set(changes) - {"rpm", "tpm"}:
            raise ValueError(f"cannot update customer columns {sorted(changes)}")
        sets = ", ".join(f"{c} = ?" for c in changes)
        return await self._execute(f"UPDATE customers SET {sets} WHERE id = ?",
                                   [*changes.values(), id], bump=True) > 0

    # the ledger, filtered (store/ledger.py)
    async def ledger_summary(self, f: lg.LedgerFilter, by: list[str] = []) -> list[dict]:
        """Sums of the rows ``f`` selects, grouped by ``by`` (customer, key, model,
        provider, status, day; and hour, for windows shorter than two days). Whole days
        come from usage_daily, the edges of other windows from usage."""
        by = list(by)
        if "hour" in by:
            raw_parts, daily = [f], None
        else:
            raw_parts, daily = lg.split_days(f)
        rows = []
        for part in raw_parts:
            sql, params = lg.raw_summary_sql(self.sql_dialect, part, by)
            rows += lg.summary_rows(by, await self._all(sql, params))
        if daily is not None:
            sql, params = lg.daily_summary_sql(self.sql_dialect, daily, by)
            try:
                rows += lg.summary_rows(by, await self._all(sql, params))
            except self.rollup_overflow:
                sql, params = lg.raw_summary_sql(self.sql_dialect, daily, by)
                rows += lg.summary_rows(by, await self._all(sql, params))
        return lg.merge(rows, by) if raw_parts and daily is not None else rows

    async def ledger_page(self, f: lg.LedgerFilter, limit: int = 100,
                          before: tuple[float, int] | None = None
                          ) -> list[tuple[int, UsageRecord]]:
        """(row id, record) of the newest rows ``f`` selects, ``before`` a row if given."""
        sql, params = lg.page_sql(f, limit, before)
        return [(row[0], r.usage_from_row(row[1:])) for row in await self._all(sql, params)]

    async def ledger_rows(self, f: lg.LedgerFilter) -> list[tuple[int, UsageRecord]]:
        sql, params = lg.export_sql(f)
        return [(row[0], r.usage_from_row(row[1:])) for row in await self._all(sql, params)]

    # console sessions (store/sessions.py)
    async def create_session(self, session: ss.ConsoleSession) -> None:
        await self._execute(ss.INSERT, session.to_row())

    async def get_session(self, id_hash: str) -> ss.ConsoleSession | None:
        row = await self._one(ss.SELECT, (id_hash,))
        return ss.ConsoleSession.from_row(row) if row else None

    async def touch_session(self, id_hash: str, now: float) -> None:
        await self._execute(ss.TOUCH, (now, id_hash))

    async def delete_session(self, id_hash: str) -> bool:
        return await self._execute(ss.DELETE, (id_hash,)) > 0

    async def purge_sessions(self, now: float, idle_cutoff: float) -> int:
        """Deletes sessions past their absolute end or idle since ``idle_cutoff``."""
        return await self._execute(ss.PURGE, (now, idle_cutoff))


def sqlite_path(url: str) -> str | None:
    """The file path in a SQLite URL or plain path; None if the URL is not SQLite."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        # sqlite:///rel.db → "rel.db"; sqlite:////abs.db → "/abs.db" (SQLAlchemy's rule)
        return rest[1:] if rest.startswith("/") else rest
    if "://" not in url:
        return url
    return None


async def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Connects and (unless told not to) migrates.

    ``None`` means $MODELMART_DATABASE_URL, else ./modelmart.db. ``migrate=False`` is for a
    CLI that wants to report which migrations it applied (``await store.migrate()``).
    """
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    if url.startswith(("postgresql://", "postgres://")):
        from modelmart.store.postgres import PostgresStore
        store: Store = await PostgresStore.connect(url)
    else:
        path = sqlite_path(url)
        if not path:
            raise StoreError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")
        from modelmart.store.sqlite import SqliteStore
        store = await SqliteStore.connect(path)
    if not migrate:
        return store
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store
