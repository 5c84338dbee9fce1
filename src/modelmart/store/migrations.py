"""Forward-only schema migrations, shared by both backends.

Each migration is a name plus SQL statements. The few types that differ between SQLite and
PostgreSQL are written as ``{placeholders}`` and filled per backend, so one text describes
the schema for both. Applied names are recorded in ``schema_migrations``; a migration is
never edited once released — add a new one instead.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    statements: tuple[str, ...]

    def render(self, backend: str) -> list[str]:
        return [render(s, backend) for s in self.statements]


def render(sql: str, backend: str) -> str:
    return sql.format(**TYPES[backend])


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
    # Evaluations (issue #13): runs, one record per (model, item, epoch), pairwise verdicts.
    # The tables are read and written by store/evals.py.
    Migration("0003_evals", EVAL_TABLES),
]
