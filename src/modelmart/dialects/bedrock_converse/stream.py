"""ConverseStream: canonical events <-> event-stream messages.

The wire flow is ``messageStart``, per block [``contentBlockStart``] ``contentBlockDelta``...
``contentBlockStop``, then ``messageStop`` (stop reason) and ``metadata`` (usage, latency).
Only tool-use blocks have a ``contentBlockStart``; text and reasoning blocks start with
their first delta. Failures are ``:message-type: exception`` messages, which boto3 raises
as ``EventStreamError`` while iterating.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelmart.core.errors import GatewayError, UpstreamError
from modelmart.core.ids import new_id
from modelmart.core.types import (
    BlockStart, BlockStop, MessageEnd, MessageStart, StreamEvent, TextBlock, TextDelta,
    ThinkingBlock, ThinkingDelta, ToolArgsDelta, ToolUseBlock, Usage,
)
from modelmart.dialects._blocks import OpenBlocks
from modelmart.dialects._checks import wire_str
from modelmart.dialects.eventstream import Message, event_message, exception_message

from .errors import error_from_stream, stream_exception_body, stream_exception_type
from .response import STOP_TO_WIRE, decode_stop, decode_usage, encode_usage, malformed


def _frame(event_type: str, payload: dict) -> bytes:
    return event_message(event_type, orjson.dumps(payload))


class StreamEncoder:
    """Canonical events -> event-stream bytes for a Converse client."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        # include_usage is an OpenAI notion: Converse streams always end with metadata.
        self.model = model
        self._clock = time.monotonic()
        self._started = False
        self._done = False
        self._wire_index: dict[int, int] = {}  # canonical block index -> wire index
        self._open = OpenBlocks()

    def event(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        head = b""
        if not self._started:
            self._started = True
            head = _frame("messageStart", {"role": "assistant"})
        if isinstance(ev, MessageStart):
            return head
        if isinstance(ev, BlockStart):
            return head + self._block_start(ev)
        if isinstance(ev, BlockStop):
            return head + self._block_stop(self._wire_index.get(ev.index))
        if isinstance(ev, MessageEnd):
            return head + self._end(ev)
        return head + self._delta(ev)

    def error(self, err: GatewayError) -> bytes:
        self._done = True
        return exception_message(stream_exception_type(err), stream_exception_body(err))

    def end(self) -> bytes:
        return b""

    def _block_start(self, ev: BlockStart) -> bytes:
        index = self._wire_index[ev.index] = len(self._wire_index)
        self._open.start(index)
        if not isinstance(ev.block, ToolUseBlock):
            return b""
        start = {"toolUse": {"toolUseId": ev.block.id, "name": ev.block.name}}
        return _frame("contentBlockStart", {"contentBlockIndex": index, "start": start})

    def _block_stop(self, index: int | None) -> bytes:
        if not self._open.stop(index):
            return b""
        return _frame("contentBlockStop", {"contentBlockIndex": index})

    def _delta(self, ev: StreamEvent) -> bytes:
        index = self._wire_index.get(getattr(ev, "index", -1))
        if index is None:
            return b""  # a delta for a block that never started has nowhere to go
        return b"".join(_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": d})
                        for d in _wire_deltas(ev))

    def _end(self, ev: MessageEnd) -> bytes:
        out = b"".join(self._block_stop(i) for i in list(self._open))
        self._done = True
        stop: dict[str, Any] = {"stopReason": STOP_TO_WIRE.get(ev.stop_reason, "end_turn")}
        if ev.stop_sequence:
            stop["additionalModelResponseFields"] = {"stop_sequence": ev.stop_sequence}
        latency = int((time.monotonic() - self._clock) * 1000)
        return out + _frame("messageStop", stop) + _frame(
            "metadata", {"usage": encode_usage(ev.usage), "metrics": {"latencyMs": latency}})


def _wire_deltas(ev: StreamEvent) -> list[dict]:
    if isinstance(ev, TextDelta):
        return [{"text": ev.text}]
    if isinstance(ev, ToolArgsDelta):
        return [{"toolUse": {"input": ev.partial_json}}] if ev.partial_json else []
    if isinstance(ev, ThinkingDelta):
        # reasoningContent is a union: text and signature travel in separate deltas.
        out = [{"reasoningContent": {"text": ev.text}}] if ev.text else []
        if ev.signature:
            out.append({"reasoningContent": {"signature": ev.signature}})
        return out
    return []


class StreamDecoder:
    """Converse stream messages -> canonical events.

    ``feed(event_type, payload)``: ``event_type`` is the message's ``:event-type``, or for
    an exception message its ``:exception-type`` (both name a member of the stream union,
    see ``eventstream.Message.name``); ``payload`` is the JSON payload. ``feed_message``
    does that for a decoded ``eventstream.Message``.
    """

    def __init__(self, model: str = "", message_id: str | None = None) -> None:
        self.model = model
        self.message_id = message_id or new_id("msg_")
        self._usage = Usage()
        self._started = False
        self._done = False
        self._stop: str | None = None
        self._stop_sequence: str | None = None
        self._has_usage = False
        self._index: dict[int, int | None] = {}  # wire index -> canonical (None: skipped)
        self._open = OpenBlocks()

    def feed_message(self, msg: Message) -> list[StreamEvent]:
        if msg.message_type == "error":
            # A transport-level error carries its text in headers, not in the payload.
            text = str(msg.headers.get(":error-message") or msg.name or "error")
            raise UpstreamError(f"upstream stream failed: {text}")
        return self.feed(msg.name, msg.payload)

    def feed(self, event_type: str, payload: bytes) -> list[StreamEvent]:
        if self._done:
            return []
        if event_type in _EXCEPTIONS or event_type.endswith("Exception"):
            raise error_from_stream(event_type, payload)
        handler = _HANDLERS.get(event_type)
        if handler is None:
            return []  # event types newer than this code
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise malformed(f"{event_type} event payload is not JSON") from None
        if not isinstance(data, dict):
            raise malformed(f"{event_type} event payload is not an object")
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(MessageStart(id=self.message_id, model=self.model))
        try:
            return out + handler(self, data)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise malformed(f"bad {event_type} event") from None

    def close(self) -> list[StreamEvent]:
        if self._done:
            return []
        if self._stop is None:
            raise UpstreamError("upstream stream ended before it finished")
        # messageStop arrived, so the answer is complete; only the metadata went missing.
        return self._finish()

    def _message_start(self, data: dict) -> list[StreamEvent]:
        return []

    def _block_start(self, data: dict) -> list[StreamEvent]:
        wire = int(data["contentBlockIndex"])
        use = data["start"].get("toolUse")
        if use is None or wire in self._index:
            self._index.setdefault(wire, None)  # a start kind canonical has no place for
            return []
        index = self._open_block(wire)
        block = ToolUseBlock(wire_str(use["toolUseId"]), wire_str(use["name"]), {})
        return [BlockStart(index, block)]

    def _block_delta(self, data: dict) -> list[StreamEvent]:
        wire, delta = int(data["contentBlockIndex"]), data["delta"]
        out: list[StreamEvent] = []
        if wire not in self._index:
            out += self._implicit_start(wire, delta)
        index = self._index.get(wire)
        if index is None:
            return out
        if "text" in delta:
            return out + [TextDelta(index, wire_str(delta["text"]))]
        if "toolUse" in delta:
            part = wire_str(delta["toolUse"]["input"])
            return out + ([ToolArgsDelta(index, part)] if part else [])
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and ("text" in reasoning or "signature" in reasoning):
            return out + [ThinkingDelta(index, text=wire_str(reasoning.get("text", "")),
                                        signature=reasoning.get("signature"))]
        return out  # citations, redacted reasoning and deltas this code does not know

    def _implicit_start(self, wire: int, delta: dict) -> list[StreamEvent]:
        if "text" in delta:
            return [BlockStart(self._open_block(wire), TextBlock(""))]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and "redactedContent" not in reasoning:
            return [BlockStart(self._open_block(wire), ThinkingBlock(""))]
        if "toolUse" in delta:
            raise ValueError("tool input before its contentBlockStart")
        self._index[wire] = None
        return []

    def _open_block(self, wire: int) -> int:
        index = sum(1 for v in self._index.values() if v is not None)
        self._index[wire] = index
        self._open.start(index)
        return index

    def _block_stop(self, data: dict) -> list[StreamEvent]:
        index = self._index.get(int(data["contentBlockIndex"]))
        return [BlockStop(index)] if self._open.stop(index) else []

    def _message_stop(self, data: dict) -> list[StreamEvent]:
        self._stop = wire_str(data["stopReason"])
        extra = data.get("additionalModelResponseFields")
        if isinstance(extra, dict) and isinstance(extra.get("stop_sequence"), str):
            self._stop_sequence = extra["stop_sequence"]
        return self._finish() if self._has_usage else []

    def _metadata(self, data: dict) -> list[StreamEvent]:
        self._usage = decode_usage(data.get("usage"))
        self._has_usage = True
        return self._finish() if self._stop is not None else []

    def _finish(self) -> list[StreamEvent]:
        self._done = True
        return self._open.end_message(decode_stop(self._stop), self._usage, self._stop_sequence)


_EXCEPTIONS = frozenset({"internalServerException", "modelStreamErrorException",
                         "validationException", "throttlingException",
                         "serviceUnavailableException"})
_HANDLERS = {
    "messageStart": StreamDecoder._message_start,
    "contentBlockStart": StreamDecoder._block_start,
    "contentBlockDelta": StreamDecoder._block_delta,
    "contentBlockStop": StreamDecoder._block_stop,
    "messageStop": StreamDecoder._message_stop,
    "metadata": StreamDecoder._metadata,
}
