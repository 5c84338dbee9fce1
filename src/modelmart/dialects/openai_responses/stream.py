"""Streamed responses: the Responses API's named SSE events, each with a
``sequence_number``. A stream is ``response.created``, ``response.in_progress``, per block
``response.output_item.added`` ... ``response.output_item.done``, then
``response.completed`` (or ``response.incomplete``) holding the whole response."""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.core.ids import new_id
from modelmart.core.types import (
    BlockStart, BlockStop, MessageEnd, MessageStart, Request, StreamEvent,
    TextDelta, ThinkingBlock, ThinkingDelta, ToolArgsDelta, ToolUseBlock,
)
from modelmart.dialects.openai_chat.errors import encode_error
from modelmart.dialects.sse import sse

from .response import (
    INCOMPLETE, call_item, message_item, reasoning_item, response_object, text_part,
)


class _Item:
    """One output item being streamed: its wire id, position and what it has so far."""

    def __init__(self, kind: str, item_id: str, output_index: int, block: Any = None) -> None:
        self.kind, self.id, self.output_index, self.block = kind, item_id, output_index, block
        self.text: list[str] = []
        self.signature: str | None = None

    def done(self) -> dict[str, Any]:
        text = "".join(self.text)
        if self.kind == "message":
            return message_item(self.id, text, "completed")
        if self.kind == "function_call":
            return call_item(self.id, self.block, text, "completed")
        return reasoning_item(self.id, text, self.signature)


class StreamEncoder:
    """Canonical events -> the SSE events the openai SDK's ``responses.stream()`` reads."""

    def __init__(self, model: str, include_usage: bool = False, *, request: Request | None = None) -> None:
        # include_usage is a Chat Completions notion: response.completed always has usage.
        self.model = model
        self.request = request
        self.id = new_id("resp_")
        self.created = int(time.time())
        self._seq = 0
        self._started = False
        self._done = False
        self._open: dict[int, _Item] = {}  # canonical block index -> item
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._count = 0

    def event(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(ev, MessageStart):
            self.id = ev.id or self.id
            self.created = ev.created or self.created
            return self._start()
        out = self._start()
        if isinstance(ev, BlockStart):
            out += self._block_start(ev.index, ev.block)
        elif isinstance(ev, (TextDelta, ThinkingDelta, ToolArgsDelta)) and ev.index in self._open:
            out += self._delta(self._open[ev.index], ev)
        elif isinstance(ev, BlockStop) and ev.index in self._open:
            out += self._block_stop(self._open.pop(ev.index))
        elif isinstance(ev, MessageEnd):
            out += self._end(ev)
        return out

    def error(self, err: BaseException) -> bytes:
        # The SDK yields this as a ResponseErrorEvent (it raises nothing); it needs
        # response.created first or it fails on its own bookkeeping.
        out = self._start()
        self._done = True
        body = encode_error(err)[1]
        e = body["error"]
        code = e["code"] or e["type"]
        return out + self._emit("error", {"code": code, "message": e["message"], "param": e["param"]})

    def end(self) -> bytes:
        return b""  # the Responses API sends no [DONE]

    # ---- lifecycle ------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        snapshot = self._response("in_progress", [], None)
        return (self._emit("response.created", {"response": snapshot})
                + self._emit("response.in_progress", {"response": snapshot}))

    def _end(self, ev: MessageEnd) -> bytes:
        out = b"".join(self._block_stop(item) for item in list(self._open.values()))
        self._open.clear()
        self._done = True
        reason = INCOMPLETE.get(ev.stop_reason)
        status = "incomplete" if reason else "completed"
        resp = self._response(status, self._output, ev.usage, reason)
        return out + self._emit(f"response.{status}", {"response": resp})

    def _response(self, status, output, usage, reason=None) -> dict[str, Any]:
        return response_object(self.id, self.created, self.model, status, output, usage,
                               self.request, reason)

    # ---- items ----------------------------------------------------------------------

    def _block_start(self, index: int, block: Any) -> bytes:
        n = self._count
        self._count += 1
        if isinstance(block, ToolUseBlock):
            item = _Item("function_call", new_id("fc_"), n, block)
            wire = call_item(item.id, block, "", "in_progress")
        elif isinstance(block, ThinkingBlock):
            item = _Item("reasoning", new_id("rs_"), n)
            wire = reasoning_item(item.id, None, None)
        else:
            item = _Item("message", new_id("msg_"), n)
            wire = message_item(item.id, None, "in_progress")
        self._open[index] = item
        out = self._emit("response.output_item.added", {"output_index": n, "item": wire})
        if item.kind == "message":
            out += self._part("response.content_part.added", item, text_part(""))
        if isinstance(block, ToolUseBlock) and block.input:
            # A producer that already knows the whole input gives it here.
            out += self._delta(item, ToolArgsDelta(index, orjson.dumps(block.input).decode()))
        return out

    def _delta(self, item: _Item, ev: Any) -> bytes:
        if isinstance(ev, ThinkingDelta):
            item.signature = ev.signature or item.signature
            if not ev.text:
                return b""
            first = not item.text
            item.text.append(ev.text)
            head = self._part("response.content_part.added", item,
                              {"type": "reasoning_text", "text": ""}) if first else b""
            return head + self._emit("response.reasoning_text.delta", self._at(item, content_index=0, delta=ev.text))
        if isinstance(ev, ToolArgsDelta):
            item.text.append(ev.partial_json)
            return self._emit("response.function_call_arguments.delta", self._at(item, delta=ev.partial_json))
        if not ev.text:
            return b""
        item.text.append(ev.text)
        return self._emit("response.output_text.delta",
                          self._at(item, content_index=0, delta=ev.text, logprobs=[]))

    def _block_stop(self, item: _Item) -> bytes:
        text = "".join(item.text)
        out = b""
        if item.kind == "message":
            out += self._emit("response.output_text.done", self._at(item, content_index=0, text=text, logprobs=[]))
            out += self._part("response.content_part.done", item, text_part(text))
        elif item.kind == "function_call":
            out += self._emit("response.function_call_arguments.done",
                              self._at(item, arguments=text, name=item.block.name))
        elif text:
            out += self._emit("response.reasoning_text.done", self._at(item, content_index=0, text=text))
            out += self._part("response.content_part.done", item, {"type": "reasoning_text", "text": text})
        done = item.done()
        self._output.append(done)
        return out + self._emit("response.output_item.done", {"output_index": item.output_index, "item": done})

    def _part(self, name: str, item: _Item, part: dict) -> bytes:
        return self._emit(name, self._at(item, content_index=0, part=part))

    @staticmethod
    def _at(item: _Item, **fields: Any) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.output_index, **fields}

    def _emit(self, name: str, payload: dict[str, Any]) -> bytes:
        data = {"type": name, **payload, "sequence_number": self._seq}
        self._seq += 1
        return sse(orjson.dumps(data), event=name)


class StreamDecoder:
    """Not implemented: the Responses API is a client surface only, for now."""

    def feed(self, event_name: str | None, data: bytes) -> list[StreamEvent]:
        raise InvalidRequest("The OpenAI Responses API is not supported as an upstream yet.")

    def close(self) -> list[StreamEvent]:
        raise InvalidRequest("The OpenAI Responses API is not supported as an upstream yet.")
