"""The router: picks deployments for a model and makes the attempts.

A model's deployments are tried in catalog order; a retryable failure (connection error,
timeout, 429, 5xx) moves on to the next deployment, any other error is the caller's and is
raised at once. For streams, fallback is possible only until the first event arrives: after
that the client has bytes and a failure is reported inside the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import AsyncIterator

from modelmart.catalog import Catalog, Deployment, ModelEntry
from modelmart.core.errors import GatewayError, InvalidRequest, is_retryable
from modelmart.core.types import Request, Response, StreamEvent
from modelmart.providers.base import Provider


@dataclass(slots=True)
class Routed:
    """Which deployment answered and after how many attempts."""

    deployment: Deployment
    attempts: int


def _capable(dep: Deployment, req: Request) -> str | None:
    """Why ``dep`` cannot serve ``req``, or None when it can."""
    cfg = dep.config
    if req.tools and not cfg.supports_tools and not (
        req.tool_choice and req.tool_choice.type == "none"
    ):
        return "tools"
    if not cfg.supports_images and req.needs_images():
        return "images"
    rf = req.response_format
    if rf and rf.type == "json_schema" and not cfg.supports_json_schema:
        return "JSON schema output"
    return None


def _request_for(dep: Deployment, req: Request) -> Request:
    """Client-specific extra fields go only to an upstream of the client's own dialect."""
    if req.extra and dep.config.kind != req.source:
        return replace(req, extra={})
    return req


class Router:
    def __init__(self, catalog: Catalog, providers: dict[str, Provider]) -> None:
        self.catalog = catalog
        self.providers = providers

    def candidates(self, entry: ModelEntry, req: Request) -> list[Deployment]:
        able, missing = [], set()
        for dep in entry.deployments:
            why = _capable(dep, req)
            if why is None:
                able.append(dep)
            else:
                missing.add(why)
        if not able:
            raise InvalidRequest(
                f"The model '{entry.id}' does not support {', '.join(sorted(missing))}.",
                param="model",
            )
        return able

    async def complete(self, req: Request) -> tuple[Response, Routed]:
        entry = self.catalog.get(req.model)
        last: GatewayError | None = None
        for attempt, dep in enumerate(self.candidates(entry, req), start=1):
            try:
                resp = await self.providers[dep.name].complete(_request_for(dep, req))
                return resp, Routed(dep, attempt)
            except GatewayError as err:
                if not is_retryable(err):
                    raise
                last = err
        assert last is not None
        raise last

    async def stream(self, req: Request) -> tuple[AsyncIterator[StreamEvent], StreamEvent, Routed]:
        """Open a stream and wait for its first event (so a failure before any byte reaches the
        client can still fall back). Returns the iterator, its first event and the route."""
        entry = self.catalog.get(req.model)
        last: GatewayError | None = None
        for attempt, dep in enumerate(self.candidates(entry, req), start=1):
            events = self.providers[dep.name].stream(_request_for(dep, req))
            try:
                first = await events.__anext__()
                return events, first, Routed(dep, attempt)
            except StopAsyncIteration:
                last = GatewayError("upstream stream was empty", status=502)
            except GatewayError as err:
                await events.aclose()
                if not is_retryable(err):
                    raise
                last = err
        assert last is not None
        raise last
