"""The provider interface: one upstream deployment, one attempt per call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from modelmart.core.redact import Redactor, url_secrets
from modelmart.core.types import Request, Response, StreamEvent


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """How much an upstream may send before the gateway gives up on its reply (a 502 that
    names the bound). Generous: real replies stay far below them."""

    header_bytes: int = 256 * 1024  # the status line and headers of one reply
    headers: int = 1000  # header lines in one reply (duplicates included)
    # A non-streamed reply's body, decompressed; for a stream, the bytes read but not yet
    # consumed (the socket stops being read long before that).
    body_bytes: int = 64 << 20
    event_bytes: int = 24 << 20  # one SSE event, or one AWS event-stream message


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """How the upstream's certificate is checked (the catalog's ``tls:``). Without a CA of
    its own, the system's trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` respected)."""

    ca_file: str | None = None  # trust these CAs (PEM) instead of the system's
    ca_dir: str | None = None
    verify: bool = True


@dataclass(slots=True)
class ProviderConfig:
    """Everything a provider needs to reach one deployment. Built by the catalog."""

    kind: str  # "openai", "anthropic", "local", ...
    model: str  # the upstream's model id
    base_url: str = ""
    api_key: str | None = None
    # How the key is sent: "bearer" (Authorization: Bearer), "x-api-key", "api-key" (Azure),
    # or any other header name.
    auth_header: str = "bearer"
    headers: dict[str, str] = field(default_factory=dict)
    # Request fields this upstream rejects; they are dropped (or refused, see provider).
    unsupported_params: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0
    total_timeout: float = 600.0
    # Capabilities the catalog declares for this deployment.
    supports_tools: bool = True
    supports_images: bool = True
    supports_json_schema: bool = True
    context_window: int | None = None
    # Client fields (of this kind's dialect) passed on: the catalog's ``passthrough:``
    # list, resolved at startup to the dialect's default when absent (api/passthrough.py).
    passthrough: frozenset[str] | None = None
    # Kind-specific settings (local: model_path, n_ctx, queue_size; ...).
    options: dict[str, Any] = field(default_factory=dict)
    # The deployment's name (the catalog's): what client-facing messages call it, never
    # its URL, which may hold credentials or internal addresses.
    name: str = ""
    limits: UpstreamLimits = UpstreamLimits()
    tls: TLSSettings | None = None
    # An http:// proxy URL for this deployment; None: the environment's (HTTPS_PROXY,
    # HTTP_PROXY, ALL_PROXY, NO_PROXY); "": none at all.
    proxy: str | None = None
    _redactor: Redactor | None = field(default=None, init=False, repr=False, compare=False)
    _more_secrets: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    @property
    def label(self) -> str:
        """How messages name this deployment."""
        return f"deployment '{self.name}'" if self.name else f"the {self.kind} upstream"

    def scrub(self, text: str) -> str:
        """``text`` (from the upstream) without any credential the gateway holds for this
        deployment, nor anything shaped like a credential (``core/redact.py``)."""
        redactor = self._redactor
        if redactor is None:
            redactor = self._redactor = Redactor(self._secrets())
        return redactor(text)

    def add_secrets(self, *values: str | None) -> None:
        """Credentials found at run time (a refreshed AWS session token): scrubbed too."""
        new = tuple(v for v in values if v and v not in self._more_secrets)
        if new:
            # The latest few: tokens rotate for as long as the process runs.
            self._more_secrets = (self._more_secrets + new)[-8:]
            self._redactor = None

    def _secrets(self) -> list[str | None]:
        out: list[str | None] = [self.api_key, *self._more_secrets]
        for value in self.headers.values():
            out += [value, value.rpartition(" ")[2]]  # "Bearer x": the token alone too
        for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            value = self.options.get(key)
            out.append(str(value) if value else None)
        return out + url_secrets(self.base_url) + url_secrets(self.proxy)


# The routing deadline of the attempt in progress, on ``time.monotonic()``'s clock: until
# it, a JSON answer or a stream's first batch. The router sets it around each attempt; a provider
# with ``honours_deadline`` bounds its own waits by it (and raises an ``UpstreamTimeout``
# with ``route_deadline`` set), which spares the router a timer of its own per attempt.
ATTEMPT_DEADLINE: ContextVar[float | None] = ContextVar("modelmart_attempt_deadline",
                                                        default=None)


class Provider(ABC):
    """One deployment of one upstream. ``complete`` and ``stream`` make exactly one attempt;
    retries and fallbacks are the router's job. Failures raise ``core.errors`` types."""

    kind: str = ""
    honours_deadline = False  # see ATTEMPT_DEADLINE

    def __init__(self, config: ProviderConfig, http: Any) -> None:
        self.config = config
        # The app's transport (h1.Client, see transport.py; None for local), or the one it
        # keeps for deployments with TLS, proxy or limits of their own.
        for_config = getattr(http, "for_config", None)
        if for_config is not None and config is not None:
            http = for_config(config)
        self.http = http

    @abstractmethod
    async def complete(self, request: Request) -> Response: ...

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """The stream event by event. A provider implements this or ``stream_batches``."""
        from .streaming import flatten

        return flatten(self.stream_batches(request))

    async def stream_batches(self, request: Request) -> AsyncIterator[list[StreamEvent]]:
        """The stream as batches: the events of one upstream read together (never empty)."""
        events = self.stream(request)
        try:
            async for event in events:
                yield [event]
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def start(self) -> None:
        """Called once when the app starts (load a model, warm a pool)."""

    async def aclose(self) -> None:
        """Called once when the app stops."""
