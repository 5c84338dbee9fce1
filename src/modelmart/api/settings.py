"""Server settings: from CLI flags, the environment and the catalog's ``server:`` section."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from modelmart.catalog import Catalog, load_catalog
from modelmart.catalog.loader import server_settings


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


@dataclass(slots=True)
class Settings:
    config_path: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    # Require an API key on model requests (MODELMART_AUTH=off for a private dev box).
    auth: bool = True
    database_url: str | None = None  # None: $MODELMART_DATABASE_URL or ./modelmart.db
    redis_url: str | None = None  # shared limits and budgets across replicas
    # Replicas lease rate-limit quota from Redis (off: one round trip per request, exact).
    redis_leases: bool = True
    coordinator_socket: str | None = None  # shared limits across --workers without Redis
    journal_dir: str | None = None  # None: ./modelmart-journal beside an SQLite file
    # The ledger writer process's socket (``serve`` starts one for SQLite); None: the
    # recorder inserts usage itself.
    ledger_socket: str | None = None
    key_poll_interval: float = 0.5
    # Where workers share their metrics (``serve --workers``); None: this process only.
    metrics_dir: str | None = None
    # /metrics needs the admin key; False when it is served on a port of its own.
    metrics_auth: bool = True
    # Also serve /metrics, without the admin key, on this port (for Prometheus).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Uploaded files (/v1/files) and Message Batch bodies may be larger than other bodies.
    max_file_bytes: int = 200 * 1024 * 1024
    batch_concurrency: int = 8  # requests of one batch in flight at once, per process
    # Ended batches (their prompts and answers) and uploaded files are removed after this.
    batch_retention_days: float = 30.0
    # OpenTelemetry traces when the environment asks for them (api/tracing.py); a prebuilt
    # TracerProvider (tests) turns them on whatever the environment says.
    tracing: bool = True
    tracer_provider: object = field(default=None, repr=False)
    # A prebuilt catalog (tests); when None it is loaded from ``config_path``.
    catalog: Catalog | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        path = env.get("MODELMART_CONFIG") or None
        server = server_settings(path)
        max_mb = float(env.get("MODELMART_MAX_BODY_MB", server.get("max_body_mb", 32)))
        return cls(
            config_path=path, max_body_bytes=int(max_mb * 1024 * 1024),
            auth=_flag(env.get("MODELMART_AUTH"), bool(server.get("auth", True))),
            database_url=env.get("MODELMART_DATABASE_URL") or server.get("database_url"),
            redis_url=env.get("MODELMART_REDIS_URL") or server.get("redis_url"),
            redis_leases=_flag(env.get("MODELMART_REDIS_LEASES"), True),
            coordinator_socket=env.get("MODELMART_COORDINATOR_SOCKET") or None,
            journal_dir=env.get("MODELMART_JOURNAL_DIR") or server.get("journal_dir"),
            ledger_socket=env.get("MODELMART_LEDGER_SOCKET") or None,
            metrics_dir=env.get("MODELMART_METRICS_DIR") or None,
            metrics_auth=_flag(env.get("MODELMART_METRICS_AUTH"), True),
            metrics_port=int(env["MODELMART_METRICS_PORT"]) if env.get("MODELMART_METRICS_PORT")
            else None,
            metrics_host=env.get("MODELMART_METRICS_HOST") or "127.0.0.1",
            max_file_bytes=int(float(env.get("MODELMART_MAX_FILE_MB", 200)) * 1024 * 1024),
            batch_concurrency=int(env.get("MODELMART_BATCH_CONCURRENCY", 8)),
            batch_retention_days=float(env.get("MODELMART_BATCH_RETENTION_DAYS", 30)),
        )

    def load_catalog(self) -> Catalog:
        return self.catalog if self.catalog is not None else load_catalog(self.config_path)

    def resolved_journal_dir(self) -> str:
        return os.path.abspath(self.journal_dir or "modelmart-journal")
