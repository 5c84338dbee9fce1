"""Upstream streams as batches: the events decoded from one upstream read travel together,
so the gateway sends them to the client in one write instead of one write per event."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

from modelmart.core.errors import GatewayError
from modelmart.core.types import StreamEvent
from modelmart.dialects.eventstream import MessageTooLarge
from modelmart.dialects.sse import EventTooLarge, SSEParser

from .base import ProviderConfig
from .http import ErrorDecoder, limit_error, open_stream, upstream_error

Batch = list[StreamEvent]


async def flatten(batches: AsyncIterator[Batch]) -> AsyncIterator[StreamEvent]:
    """Event by event, for callers that want single events."""
    try:
        async for batch in batches:
            for event in batch:
                yield event
    finally:
        await batches.aclose()  # type: ignore[attr-defined]


Opener = Callable[[], Awaitable[Any]]  # opens the upstream stream: returns an http.Body


def stream_failure(err: GatewayError, cfg: ProviderConfig | None) -> GatewayError:
    """An error decoded from a stream (an error event, a malformed or oversized frame) as the
    client may see it: credentials scrubbed, a bound named by the deployment."""
    if cfg is None:
        return err
    if isinstance(err, (EventTooLarge, MessageTooLarge)):
        return limit_error(cfg, "event_bytes", err.limit)
    return upstream_error(err, cfg)


async def batches_of(
    open_body: Opener,
    decode_chunk: Callable[[bytes, Batch], None],
    finish: Callable[[Batch], None],
    cfg: ProviderConfig | None = None,
) -> AsyncIterator[Batch]:
    """One batch per upstream read (empty reads yield nothing). ``decode_chunk(chunk, batch)``
    and ``finish(batch)`` append the events they decode to ``batch``, and may raise a
    ``GatewayError`` (an error event, a truncated stream): the events appended before it are
    yielded first, so they still reach the client and are billed.

    ``open_body`` (``http.open_stream`` with its arguments bound) is called at the first
    iteration; the body it returns (``read()`` gives b"" at its end) is closed when this
    generator ends, so a provider needs no generator of its own around this one. Errors the
    decoder raises go through ``stream_failure`` for the deployment ``cfg``."""
    body = await open_body()
    try:
        while True:
            chunk = await body.read()
            batch: Batch = []
            try:
                if chunk:
                    decode_chunk(chunk, batch)
                else:  # the end of the body
                    finish(batch)
            except GatewayError as err:
                failure = stream_failure(err, cfg)
                if batch:
                    yield batch
                raise failure from None
            if batch:
                yield batch
            if not chunk:
                return
    finally:
        await body.aclose()


def sse_batches(open_body: Opener, decoder, cfg: ProviderConfig | None = None
                ) -> AsyncIterator[Batch]:
    """Batches from an SSE body through a dialect's ``StreamDecoder`` (``batches_of`` itself,
    not a generator around it: a layer less per batch); events bounded by
    ``cfg.limits.event_bytes``."""
    parser = SSEParser(cfg.limits.event_bytes) if cfg is not None else SSEParser()
    feed = decoder.feed
    feed_datas = getattr(decoder, "feed_datas", None)
    if feed_datas is None:
        def feed_datas(datas: list[bytes], batch: Batch) -> None:
            for data in datas:
                batch += feed(None, data)

    def decode_chunk(chunk: bytes, batch: Batch) -> None:
        datas = parser.feed_data(chunk)  # the common case: only unnamed one-line events
        if datas is not None:
            feed_datas(datas, batch)
        else:
            for name, data in parser.feed(chunk):
                batch += feed(name, data)

    def finish(batch: Batch) -> None:
        for name, data in parser.close():
            batch += feed(name, data)
        batch += decoder.close()

    return batches_of(open_body, decode_chunk, finish, cfg)


def sse_upstream(http, url: str, headers, make_body: Callable[[], bytes], cfg,
                 decode_error: ErrorDecoder, decoder) -> AsyncIterator[Batch]:
    """An SSE upstream's stream as batches: the request (body from ``make_body``) goes out
    at the first iteration, and the connection is closed when the batches end."""
    async def opening():
        return await open_stream(http, url, headers, make_body(), cfg, decode_error)

    return sse_batches(opening, decoder, cfg)
