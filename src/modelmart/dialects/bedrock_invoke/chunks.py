"""InvokeModelWithResponseStream framing, shared by every body family.

Each model event (an Anthropic ``message_start``, a Nova ``contentBlockDelta``, a Llama
``generation`` piece) is a JSON object, sent as one AWS event-stream message of type
``chunk`` whose payload is ``{"bytes": base64(json)}``; boto3 yields it as
``{"chunk": {"bytes": b'{...}'}}``. The last chunk of a stream carries
``amazon-bedrock-invocationMetrics`` (token counts and latencies), which LangChain reads for
usage. Failures are exception messages, raised by boto3 as ``EventStreamError``.
"""

from __future__ import annotations

import base64
import time

import orjson

from modelmart.core.errors import GatewayError
from modelmart.core.types import MessageEnd, StreamEvent, TextDelta, ThinkingDelta, ToolArgsDelta, Usage
from modelmart.dialects.bedrock_converse.errors import stream_exception_body, stream_exception_type
from modelmart.dialects.eventstream import event_message, exception_message

METRICS_KEY = "amazon-bedrock-invocationMetrics"


def chunk_message(obj: dict) -> bytes:
    """One ``chunk`` event holding ``obj``."""
    data = base64.b64encode(orjson.dumps(obj)).decode("ascii")
    return event_message("chunk", orjson.dumps({"bytes": data}))


class ChunkStream:
    """The family-independent half of a stream encoder: the clock, the framing, the
    metrics and the error message. A family's encoder turns canonical events into model
    events (``objects``); this turns those into bytes."""

    def __init__(self) -> None:
        self._clock = time.monotonic()
        self._first_byte: int | None = None
        self._done = False

    def event(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if self._first_byte is None and isinstance(ev, (TextDelta, ToolArgsDelta, ThinkingDelta)):
            self._first_byte = self._elapsed_ms()
        objects = self.objects(ev)
        if isinstance(ev, MessageEnd):
            self._done = True
        return b"".join(map(chunk_message, objects)) if objects else b""

    def objects(self, ev: StreamEvent) -> list[dict]:
        raise NotImplementedError

    def error(self, err: GatewayError) -> bytes:
        self._done = True
        return exception_message(stream_exception_type(err), stream_exception_body(err))

    def end(self) -> bytes:
        return b""

    def metrics(self, usage: Usage) -> dict:
        """The ``amazon-bedrock-invocationMetrics`` object for the last chunk."""
        latency = self._elapsed_ms()
        out = {"inputTokenCount": usage.input_tokens, "outputTokenCount": usage.output_tokens,
               "invocationLatency": latency,
               "firstByteLatency": latency if self._first_byte is None else self._first_byte}
        if usage.cache_read_tokens or usage.cache_write_tokens:
            out["cacheReadInputTokenCount"] = usage.cache_read_tokens
            out["cacheWriteInputTokenCount"] = usage.cache_write_tokens
        return out

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._clock) * 1000)
