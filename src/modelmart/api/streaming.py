"""Encode a canonical stream for the client while metering it.

The stream is billed for what was generated however it ends: normally (the upstream's final
usage), after an upstream failure mid-stream (the dialect's error event is sent, usage so
far is billed), or when the client goes away (the upstream is closed, usage so far billed).
When the upstream never reported usage, output is estimated from the text that was sent.
"""

from __future__ import annotations

import logging
import math
import time
from typing import AsyncIterator

from modelmart.core.errors import GatewayError, InternalError
from modelmart.core.types import (
    MessageEnd, MessageStart, StreamEvent, TextDelta, ThinkingDelta, ToolArgsDelta, Usage,
)
from modelmart.routing import Routed

from .admission import Call
from .http import Send

log = logging.getLogger("modelmart.api")


class StreamMeter:
    __slots__ = ("start_usage", "end_usage", "chars", "ttft_ms")

    def __init__(self) -> None:
        self.start_usage: Usage | None = None
        self.end_usage: Usage | None = None
        self.chars = 0
        self.ttft_ms: float | None = None

    def observe(self, event: StreamEvent) -> None:
        cls = type(event)
        if cls is TextDelta or cls is ThinkingDelta or isinstance(event, TextDelta):
            self.chars += len(event.text)
        elif cls is ToolArgsDelta:
            self.chars += len(event.partial_json)
        elif cls is MessageEnd:
            self.end_usage = event.usage
        elif cls is MessageStart:
            self.start_usage = event.usage

    def usage(self, estimated_input: int) -> tuple[Usage, bool]:
        """The usage to bill, and whether any of it is an estimate."""
        if self.end_usage is not None:
            return self.end_usage, False
        usage = Usage()
        start = self.start_usage
        if start is not None and start.total_input_tokens:
            usage.input_tokens = start.input_tokens
            usage.cache_read_tokens = start.cache_read_tokens
            usage.cache_write_tokens = start.cache_write_tokens
        else:
            usage.input_tokens = estimated_input
        usage.output_tokens = max(start.output_tokens if start else 0, math.ceil(self.chars / 4))
        return usage, True


async def send_metered(
    send: Send, start: dict, call: Call, first: list[StreamEvent],
    batches: AsyncIterator[list[StreamEvent]], encoder, msg_id: str, routed: Routed,
) -> None:
    """Send the streamed response (``start``, its ``http.response.start``, first): one chunk
    of bytes per batch of events (the events of one upstream read), so the client gets one
    write where the upstream sent one. Settles the call and closes the upstream however the
    stream ends, even if the client is gone before the response starts."""
    meter = StreamMeter()
    status, error, http_status = "client_disconnected", None, 499
    tail: bytes | None = b""
    sending = True  # an exception raised by ``send`` means the client is gone
    try:
        await send(start)
        sending = False
        head = first[0]
        if type(head) is MessageStart:
            # Our request id replaces the upstream's message id; the clock is ours too.
            head.created = head.created or int(time.time())
        data = _encode(first, encoder, meter, call, msg_id)
        sending = True
        await send({"type": "http.response.body", "body": data, "more_body": True})
        sending = False
        async for batch in batches:
            data = _encode(batch, encoder, meter, call, msg_id)
            if data:
                sending = True
                await send({"type": "http.response.body", "body": data, "more_body": True})
                sending = False
        routed.finish(True)
        status, http_status = "ok", 200
        tail = encoder.end()
    except GatewayError as err:
        routed.finish(err)
        status, error, http_status = "upstream_failed_mid_stream", err.message, err.status
        tail = encoder.error(err)
    except Exception:
        if sending:  # a server whose send raises once the client has gone
            tail = None
        else:
            log.exception("stream %s failed", call.rid)
            status, error, http_status = "error", "internal error during the stream", 500
            tail = encoder.error(InternalError("internal error during the stream; see the server log"))
    finally:
        routed.finish(False)  # closed early (no-op when the outcome is known)
        await batches.aclose()  # type: ignore[attr-defined]
        usage, estimated = meter.usage(call.estimated_tokens)
        call.settle(usage=usage, deployment=routed.deployment, attempts=routed.attempts,
                         status=status, http_status=http_status, error=error,
                         ttft_ms=meter.ttft_ms, estimated=estimated)
    # Only reached when the stream was not cancelled (a client that went away gets nothing).
    if tail is not None:
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def _encode(batch: list[StreamEvent], encoder, meter: StreamMeter, call: Call, msg_id: str) -> bytes:
    encode = encoder.event
    frames = []
    for event in batch:
        cls = type(event)
        # Most events: counted here, not in observe (a dialect may hand its own TextDelta).
        if cls is TextDelta or isinstance(event, TextDelta):
            if meter.ttft_ms is None:
                meter.ttft_ms = round((time.perf_counter() - call.t0) * 1000, 3)
            meter.chars += len(event.text)
        else:
            if cls is MessageStart:
                event.id = msg_id
            elif meter.ttft_ms is None and cls in _CONTENT:
                meter.ttft_ms = round((time.perf_counter() - call.t0) * 1000, 3)
            meter.observe(event)
        frames.append(encode(event))
    return b"".join(frames)


_CONTENT = (TextDelta, ToolArgsDelta, ThinkingDelta)
