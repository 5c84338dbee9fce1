"""Rows as plain dataclasses, shared by tenancy, metering and the admin API."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Customer:
    id: int
    name: str
    created_at: float
    rpm: int | None = None  # per-customer limits across all its keys
    tpm: int | None = None


@dataclass(slots=True)
class ApiKey:
    id: int
    customer_id: int | None  # None for admin keys
    prefix: str  # the first characters of the secret, shown in listings ("mm-abc123")
    secret_hash: str  # sha256 hex of the secret; the secret itself is never stored
    created_at: float
    role: str = "user"  # "user" | "admin"
    models: list[str] | None = None  # None: every model
    rpm: int | None = None
    tpm: int | None = None
    budget_pico: int | None = None  # spend limit in picodollars of customer price
    budget_period: str | None = None  # "day" | "month" | "total"
    revoked_at: float | None = None
    name: str | None = None
    aws_access_key_id: str | None = None  # for SigV4 (Bedrock surface)
    # SigV4 verification needs the secret itself. In plaintext it lives only in memory (set
    # by accounts.create_key, and by the key cache); the store keeps it encrypted
    # (store/sealing.py) in aws_secret_sealed, and never reads back the plaintext.
    aws_secret: str | None = None
    aws_secret_sealed: str | None = None
    customer_name: str | None = None  # filled by joins


@dataclass(slots=True)
class UsageRecord:
    """One ledger row: one request, whatever its outcome."""

    request_id: str
    created_at: float  # epoch seconds, when the request arrived
    customer_id: int | None
    key_id: int | None
    model: str  # the public model id the client asked for
    deployment: str | None
    provider: str | None
    surface: str  # "openai" | "anthropic" | ...
    stream: bool
    status: str  # "ok" | "error" | "client_disconnected" | "upstream_failed_mid_stream"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_pico: int = 0  # what the provider charges the operator
    price_pico: int = 0  # what the customer is charged
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    attempts: int = 1
    http_status: int = 200
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def margin_pico(self) -> int:
        return self.price_pico - self.cost_pico
