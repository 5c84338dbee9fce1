"""The provider interface: one upstream deployment, one attempt per call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from modelmart.core.types import Request, Response, StreamEvent


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
        self.http = http  # the app's upstream connection pool, h1.Client (None for local)

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
