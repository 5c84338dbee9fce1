"""Messages API streaming: canonical events <-> Anthropic's named SSE events.

A stream is ``message_start``, ``ping``, per block ``content_block_start`` / ``_delta`` /
``_stop``, then ``message_delta`` (stop reason, running usage) and ``message_stop``.
"""

from __future__ import annotations

import dataclasses
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
from modelmart.dialects.sse import sse

from .errors import error_body, error_from_event
from .response import STOP_TO_WIRE, decode_stop, encode_usage, malformed, update_usage


def _frame(name: str, payload: dict) -> bytes:
    return sse(orjson.dumps({"type": name, **payload}), event=name)


class StreamEncoder:
    """Canonical events -> SSE bytes for an Anthropic client."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        # include_usage is an OpenAI notion: Anthropic streams always carry usage.
        self.model = model
        self._started = False
        self._done = False
        self._wire_index: dict[int, int] = {}  # canonical block index -> wire index
        self._open = OpenBlocks()

    def event(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(ev, MessageStart):
            return self._start(ev.id, ev.usage) if not self._started else b""
        head = b"" if self._started else self._start(new_id("msg_"), Usage())
        if isinstance(ev, BlockStart):
            return head + self._block_start(ev)
        if isinstance(ev, BlockStop):
            return head + self._block_stop(self._wire_index.get(ev.index))
        if isinstance(ev, MessageEnd):
            return head + self._end(ev)
        return head + self._delta(ev)

    def error(self, err: GatewayError) -> bytes:
        self._done = True
        return sse(orjson.dumps(error_body(err)), event="error")

    def end(self) -> bytes:
        return b""

    def _start(self, msg_id: str, usage: Usage) -> bytes:
        self._started = True
        message = {
            "id": msg_id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": encode_usage(usage),
        }
        return _frame("message_start", {"message": message}) + _frame("ping", {})

    def _block_start(self, ev: BlockStart) -> bytes:
        index = len(self._wire_index)
        self._wire_index[ev.index] = index
        self._open.start(index)
        return _frame("content_block_start",
                      {"index": index, "content_block": _empty_block(ev.block)})

    def _block_stop(self, index: int | None) -> bytes:
        if not self._open.stop(index):
            return b""
        return _frame("content_block_stop", {"index": index})

    def _delta(self, ev: StreamEvent) -> bytes:
        index = self._wire_index.get(getattr(ev, "index", -1))
        if index is None:
            return b""  # a delta for a block that never started has nowhere to go
        out = b""
        for delta in _wire_deltas(ev):
            out += _frame("content_block_delta", {"index": index, "delta": delta})
        return out

    def _end(self, ev: MessageEnd) -> bytes:
        out = b"".join(self._block_stop(i) for i in list(self._open))
        self._done = True
        delta = {"stop_reason": STOP_TO_WIRE.get(ev.stop_reason, "end_turn"),
                 "stop_sequence": ev.stop_sequence}
        # Input usage is restated here because an OpenAI upstream reports it only at the
        # end; the SDK takes input_tokens from message_delta when present.
        out += _frame("message_delta", {"delta": delta, "usage": encode_usage(ev.usage)})
        return out + _frame("message_stop", {})


def _empty_block(block: Any) -> dict:
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    if isinstance(block, ThinkingBlock):
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "text", "text": ""}


def _wire_deltas(ev: StreamEvent) -> list[dict]:
    if isinstance(ev, TextDelta):
        return [{"type": "text_delta", "text": ev.text}]
    if isinstance(ev, ToolArgsDelta):
        return [{"type": "input_json_delta", "partial_json": ev.partial_json}]
    if isinstance(ev, ThinkingDelta):
        out = [{"type": "thinking_delta", "thinking": ev.text}] if ev.text else []
        if ev.signature:
            out.append({"type": "signature_delta", "signature": ev.signature})
        return out
    return []


class StreamDecoder:
    """Anthropic SSE events (name, data) -> canonical events."""

    def __init__(self) -> None:
        self._usage = Usage()
        self._started = False
        self._done = False
        self._stop: str | None = None
        self._stop_sequence: str | None = None
        # Anthropic index -> canonical index; blocks we skip (server tools, redacted
        # thinking) leave no gap in canonical numbering.
        self._index: dict[int, int] = {}
        self._open = OpenBlocks()

    def feed(self, event_name: str | None, data: bytes) -> list[StreamEvent]:
        if event_name == "ping" or self._done:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise malformed(f"{event_name or 'stream'} event data is not JSON") from None
        if not isinstance(payload, dict):
            raise malformed(f"{event_name or 'stream'} event data is not an object")
        kind = payload.get("type") or event_name
        if kind == "error" or event_name == "error":
            raise error_from_event(payload)
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []  # ping and event types newer than this code
        if not self._started and kind != "message_start":
            raise malformed(f"{kind} event before message_start")
        try:
            return handler(self, payload)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise malformed(f"bad {kind} event") from None

    def close(self) -> list[StreamEvent]:
        if self._done:
            return []
        if self._stop is None:
            raise UpstreamError("upstream stream ended before it finished")
        # message_delta arrived, so the answer is complete; only message_stop went missing.
        return self._finish()

    def _message_start(self, payload: dict) -> list[StreamEvent]:
        message = payload["message"]
        update_usage(self._usage, message.get("usage") or {})
        self._started = True
        return [MessageStart(id=str(message["id"]), model=str(message["model"]),
                             usage=dataclasses.replace(self._usage))]

    def _block_start(self, payload: dict) -> list[StreamEvent]:
        wire_index, block = int(payload["index"]), payload["content_block"]
        kind = block["type"]
        if kind not in ("text", "tool_use", "thinking"):
            return []
        index = self._index[wire_index] = len(self._index)
        self._open.start(index)
        if kind == "text":
            out: list[StreamEvent] = [BlockStart(index, TextBlock(""))]
            return out + ([TextDelta(index, block["text"])] if block.get("text") else [])
        if kind == "tool_use":
            out = [BlockStart(index, ToolUseBlock(str(block["id"]), str(block["name"]), {}))]
            args = block.get("input")
            return out + ([ToolArgsDelta(index, orjson.dumps(args).decode())] if args else [])
        out = [BlockStart(index, ThinkingBlock(""))]
        if block.get("thinking") or block.get("signature"):
            out.append(ThinkingDelta(index, block.get("thinking") or "", block.get("signature")))
        return out

    def _block_delta(self, payload: dict) -> list[StreamEvent]:
        index = self._index.get(int(payload["index"]))
        if index is None:
            return []
        delta = payload["delta"]
        kind = delta["type"]
        if kind == "text_delta":
            return [TextDelta(index, wire_str(delta["text"]))]
        if kind == "input_json_delta":
            part = wire_str(delta["partial_json"])
            return [ToolArgsDelta(index, part)] if part else []
        if kind == "thinking_delta":
            return [ThinkingDelta(index, text=wire_str(delta["thinking"]))]
        if kind == "signature_delta":
            return [ThinkingDelta(index, signature=wire_str(delta["signature"]))]
        return []  # citations and deltas this code does not know

    def _block_stop(self, payload: dict) -> list[StreamEvent]:
        index = self._index.get(int(payload["index"]))
        return [BlockStop(index)] if self._open.stop(index) else []

    def _message_delta(self, payload: dict) -> list[StreamEvent]:
        delta = payload.get("delta") or {}
        self._stop = delta.get("stop_reason") or self._stop
        if isinstance(delta.get("stop_sequence"), str):
            self._stop_sequence = delta["stop_sequence"]
        update_usage(self._usage, payload.get("usage") or {})
        return []

    def _message_stop(self, payload: dict) -> list[StreamEvent]:
        return self._finish()

    def _finish(self) -> list[StreamEvent]:
        self._done = True
        return self._open.end_message(decode_stop(self._stop), self._usage, self._stop_sequence)


_HANDLERS = {
    "message_start": StreamDecoder._message_start,
    "content_block_start": StreamDecoder._block_start,
    "content_block_delta": StreamDecoder._block_delta,
    "content_block_stop": StreamDecoder._block_stop,
    "message_delta": StreamDecoder._message_delta,
    "message_stop": StreamDecoder._message_stop,
}
