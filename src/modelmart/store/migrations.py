"""Forward-only schema migrations, shared by both backends.

Each migration is a name plus SQL statements. The few types that differ between SQLite and
PostgreSQL are written as ``{placeholders}`` and filled per backend, so one text describes
the schema for both. Applied names are recorded in ``schema_migrations``; a migration is
never edited once released — add a new one instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelmart.store import batches

TYPES = {
    "sqlite": {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "int": "INTEGER",  # SQLite integers are 64-bit whatever the declared type
        "real": "REAL",
        "bool": "INTEGER",
        "json": "TEXT",
    },
    "postgres": {
        "pk": "BIGSERIAL PRIMARY KEY",
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "json": "JSONB",
    },
}

SCHEMA_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name TEXT PRIMARY KEY, applied_at {real} NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    # A statement is one text for both backends, or {backend: text} where they differ
    # too much for placeholders (triggers); a backend missing from the dict skips it.
    statements: tuple[str | dict[str, str], ...]

    def render(self, backend: str) -> list[str]:
        return [render(s[backend] if isinstance(s, dict) else s, backend)
                for s in self.statements if not isinstance(s, dict) or backend in s]


def render(sql: str, backend: str) -> str:
    return sql.format(**TYPES[backend])


# The ledger summed per UTC day, customer, key, model, provider and status, kept by a
# trigger in the transaction that inserts the rows (only rows actually inserted: a
# replayed request id adds nothing). The console's overview, usage totals and margins read
# it instead of scanning every request (100,000 rows: ~300 ms a scan on a busy 2-core
# machine, against a few ms here). NULL ids and providers are stored as 0 and '' so that
# their rows merge under the primary key. PostgreSQL sums a whole INSERT at once from its
# transition table, upserting in key order so concurrent writers never deadlock; money
# is NUMERIC there, exact without bound; SQLite adds row by row (one writer at a time).
_DAILY_SUMS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens",
               "cache_write_tokens", "reasoning_tokens", "cost_pico", "price_pico")
_DAILY_GROUP = "day, customer_id, key_id, model, provider, status"
_DAILY_UPSERT = ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in _DAILY_SUMS)


def _daily_select(source: str, day: str, money_sum: str = "SUM") -> str:
    tokens = ", ".join(f"{money_sum if c.endswith('_pico') else 'SUM'}({c})"
                       for c in _DAILY_SUMS[1:])
    return (f"SELECT {day}, COALESCE(customer_id, 0), COALESCE(key_id, 0), model, "
            f"COALESCE(provider, ''), status, COUNT(*), {tokens} FROM {source} "
            f"GROUP BY 1, 2, 3, 4, 5, 6")


_SQLITE_DAY = "CAST(created_at / 86400 AS INTEGER)"
_PG_DAY = "floor(created_at / 86400)::bigint"
USAGE_DAILY = (
    {"sqlite": """CREATE TABLE usage_daily (
            day INTEGER NOT NULL, customer_id INTEGER NOT NULL, key_id INTEGER NOT NULL,
            model TEXT NOT NULL, provider TEXT NOT NULL, status TEXT NOT NULL,
            requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
            cost_pico INTEGER NOT NULL, price_pico INTEGER NOT NULL,
            PRIMARY KEY (day, customer_id, key_id, model, provider, status)) WITHOUT ROWID""",
     "postgres": """CREATE TABLE usage_daily (
            day BIGINT NOT NULL, customer_id BIGINT NOT NULL, key_id BIGINT NOT NULL,
            model TEXT NOT NULL, provider TEXT NOT NULL, status TEXT NOT NULL,
            requests BIGINT NOT NULL, input_tokens NUMERIC NOT NULL,
            output_tokens NUMERIC NOT NULL, cache_read_tokens NUMERIC NOT NULL,
            cache_write_tokens NUMERIC NOT NULL, reasoning_tokens NUMERIC NOT NULL,
            cost_pico NUMERIC NOT NULL, price_pico NUMERIC NOT NULL,
            PRIMARY KEY (day, customer_id, key_id, model, provider, status))"""},
    "CREATE INDEX usage_daily_customer ON usage_daily (customer_id, day)",
    "CREATE INDEX usage_daily_key ON usage_daily (key_id, day)",
    {"sqlite": f"INSERT INTO usage_daily {_daily_select('usage', _SQLITE_DAY, 'exact_sum')}",
     "postgres": f"INSERT INTO usage_daily {_daily_select('usage', _PG_DAY)}"},
    {"sqlite": f"""CREATE TRIGGER usage_daily_add AFTER INSERT ON usage BEGIN
            INSERT INTO usage_daily VALUES (CAST(NEW.created_at / 86400 AS INTEGER),
                COALESCE(NEW.customer_id, 0), COALESCE(NEW.key_id, 0), NEW.model,
                COALESCE(NEW.provider, ''), NEW.status, 1, NEW.input_tokens,
                NEW.output_tokens, NEW.cache_read_tokens, NEW.cache_write_tokens,
                NEW.reasoning_tokens, NEW.cost_pico, NEW.price_pico)
            ON CONFLICT ({_DAILY_GROUP}) DO UPDATE SET {_DAILY_UPSERT};
        END""",
     "postgres": f"""CREATE FUNCTION usage_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO usage_daily {_daily_select('new_rows', _PG_DAY)} ORDER BY 1, 2, 3, 4, 5, 6
            ON CONFLICT ({_DAILY_GROUP}) DO UPDATE SET {_DAILY_UPSERT};
            RETURN NULL;
        END $$"""},
    {"postgres": """CREATE TRIGGER usage_daily_add AFTER INSERT ON usage
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION usage_daily_add()"""},
)


from modelmart.store.eval_schema import EVAL_TABLES  # noqa: E402  (plain strings)

MIGRATIONS: list[Migration] = [
    Migration("0001_tenancy", (
        """CREATE TABLE customers (
            id {pk},
            name TEXT NOT NULL UNIQUE,
            created_at {real} NOT NULL,
            rpm {int},
            tpm {int})""",
        # secret_hash is unique: two keys with one secret would make authentication ambiguous.
        """CREATE TABLE api_keys (
            id {pk},
            customer_id {int} REFERENCES customers(id),
            prefix TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            created_at {real} NOT NULL,
            role TEXT NOT NULL DEFAULT 'user',
            models TEXT,
            rpm {int},
            tpm {int},
            budget_pico {int},
            budget_period TEXT,
            revoked_at {real},
            name TEXT,
            aws_access_key_id TEXT UNIQUE,
            aws_secret TEXT)""",
        "CREATE INDEX api_keys_customer ON api_keys (customer_id)",
        # One row that every tenancy mutation bumps, so servers can poll one integer.
        """CREATE TABLE change_counter (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            value {int} NOT NULL)""",
        "INSERT INTO change_counter (id, value) VALUES (1, 0)",
    )),
    # No foreign keys on the ledger: a charged request must be recorded even if its key or
    # customer row is gone or was never written.
    Migration("0002_usage", (
        """CREATE TABLE usage (
            id {pk},
            request_id TEXT NOT NULL UNIQUE,
            created_at {real} NOT NULL,
            customer_id {int},
            key_id {int},
            model TEXT NOT NULL,
            deployment TEXT,
            provider TEXT,
            surface TEXT NOT NULL,
            stream {bool} NOT NULL,
            status TEXT NOT NULL,
            input_tokens {int} NOT NULL DEFAULT 0,
            output_tokens {int} NOT NULL DEFAULT 0,
            cache_read_tokens {int} NOT NULL DEFAULT 0,
            cache_write_tokens {int} NOT NULL DEFAULT 0,
            reasoning_tokens {int} NOT NULL DEFAULT 0,
            cost_pico {int} NOT NULL DEFAULT 0,
            price_pico {int} NOT NULL DEFAULT 0,
            latency_ms {real} NOT NULL DEFAULT 0,
            ttft_ms {real},
            attempts {int} NOT NULL DEFAULT 1,
            http_status {int} NOT NULL DEFAULT 200,
            error TEXT,
            extra {json})""",
        "CREATE INDEX usage_created ON usage (created_at)",
        "CREATE INDEX usage_customer_created ON usage (customer_id, created_at)",
        "CREATE INDEX usage_key_created ON usage (key_id, created_at)",
    )),
    Migration("0003_console", (
        # The console's sign-ins, shared by every worker and replica. The id is a hash of
        # the cookie's value, so a read of this table cannot be replayed as a session.
        """CREATE TABLE console_sessions (
            id_hash TEXT PRIMARY KEY,
            key_id {int} NOT NULL,
            customer_id {int},
            role TEXT NOT NULL,
            created_at {real} NOT NULL,
            last_seen {real} NOT NULL,
            expires_at {real} NOT NULL,
            client TEXT)""",
        "CREATE INDEX console_sessions_expires ON console_sessions (expires_at)",
        "CREATE INDEX console_sessions_key ON console_sessions (key_id)",
        *USAGE_DAILY,
    )),
    # Evaluations (issue #13): runs, one record per (model, item, epoch), pairwise verdicts.
    # The tables are read and written by store/evals.py.
    Migration("0004_evals", EVAL_TABLES),
    # Files, batches and their requests (store/batches.py).
    Migration("0005_batches", batches.DDL),
]
