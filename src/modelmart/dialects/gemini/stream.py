"""``streamGenerateContent?alt=sse``: every SSE data payload is a whole
``GenerateContentResponse`` carrying the next parts; the last has ``finishReason`` and
the final ``usageMetadata``. There is no end marker: the body just ends."""

from __future__ import annotations

from typing import Any

import orjson

from modelmart.core.errors import UpstreamError
from modelmart.core.ids import new_id
from modelmart.core.types import (
    BlockStart, BlockStop, MessageEnd, MessageStart, StreamEvent, TextBlock, TextDelta,
    ThinkingBlock, ThinkingDelta, ToolArgsDelta, ToolUseBlock, Usage,
)
from modelmart.dialects.sse import json_chunk, sse

from .errors import encode_error, stream_error
from .parts import call_part
from .response import blocked, part_blocks
from .usage import decode_usage, encode_usage, finish_reason, stop_reason


class StreamEncoder:
    """Canonical events -> SSE chunks a Gemini client reads. Text and thoughts go out as
    they come; a function call goes out whole when its block stops (Gemini never splits
    one); the last chunk has the finish reason and usage."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        # include_usage is an OpenAI notion: Gemini streams always carry usage.
        self.model = model
        self.id = new_id()
        self._calls: dict[int, tuple[ToolUseBlock, list[str]]] = {}
        self._signature: str | None = None  # from a text-less thinking block, for the next call
        self._thought_text: set[int] = set()  # thinking blocks that had text
        self._done = False

    def event(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(ev, MessageStart):
            self.id = ev.id or self.id
            return b""
        if isinstance(ev, BlockStart) and isinstance(ev.block, ToolUseBlock):
            # A producer that already knows the whole input gives it here.
            head = [orjson.dumps(ev.block.input).decode()] if ev.block.input else []
            self._calls[ev.index] = (ev.block, head)
            return b""
        if isinstance(ev, TextDelta):
            return self._chunk([{"text": ev.text}]) if ev.text else b""
        if isinstance(ev, ThinkingDelta):
            return self._thinking(ev)
        if isinstance(ev, ToolArgsDelta) and ev.index in self._calls:
            self._calls[ev.index][1].append(ev.partial_json)
            return b""
        if isinstance(ev, BlockStop) and ev.index in self._calls:
            return self._call(*self._calls.pop(ev.index))
        if isinstance(ev, MessageEnd):
            self._done = True
            return self._chunk([{"text": ""}], finish_reason(ev.stop_reason), ev.usage)
        return b""

    def error(self, err: BaseException) -> bytes:
        # google-genai raises APIError for a stream chunk that is an {"error": ...} object.
        self._done = True
        return sse(orjson.dumps(encode_error(err)[1]))

    def end(self) -> bytes:
        return b""

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        if ev.text:
            self._thought_text.add(ev.index)
        # Only a text-less thinking block is a Gemini call signature (see parts.py); another
        # provider's signature on a thought would be refused by Gemini.
        if ev.signature and ev.index not in self._thought_text:
            self._signature = ev.signature
        return self._chunk([{"text": ev.text, "thought": True}]) if ev.text else b""

    def _call(self, block: ToolUseBlock, fragments: list[str]) -> bytes:
        text = "".join(fragments)
        try:
            args = orjson.loads(text) if text.strip() else {}
        except orjson.JSONDecodeError:
            raise UpstreamError(f"tool call arguments are not JSON: {text[:200]!r}") from None
        if not isinstance(args, dict):
            raise UpstreamError("tool call arguments are not a JSON object")
        part = call_part(ToolUseBlock(block.id, block.name, args), self._signature)
        self._signature = None
        return self._chunk([part])

    def _chunk(self, parts: list[dict], finish: str | None = None, usage: Usage | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            chunk["usageMetadata"] = encode_usage(usage)
        chunk["modelVersion"] = self.model
        chunk["responseId"] = self.id
        return sse(orjson.dumps(chunk))


class StreamDecoder:
    """Upstream SSE data payloads -> canonical events. Usage in each chunk supersedes the
    last; MessageEnd waits for the end of the body, since usage may follow the finish."""

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._open: str | None = None  # "text" or "thinking" while such a block is open
        self._index = -1
        self._finish: str | None = None
        self._saw_tool = False
        self._usage = Usage()

    def feed(self, event_name: str | None, data: bytes) -> list[StreamEvent]:
        if self._ended:
            return []
        chunk = json_chunk(data)
        if chunk.get("error"):
            raise stream_error(chunk["error"])
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(MessageStart(str(chunk.get("responseId") or ""),
                                    str(chunk.get("modelVersion") or "")))
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = decode_usage(chunk["usageMetadata"])
        candidates = chunk.get("candidates")
        if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
            out.extend(self._candidate(candidates[0]))
        elif blocked(chunk):
            self._finish = "SAFETY"
        return out

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        if self._finish is None:
            raise UpstreamError("upstream stream ended before it finished")
        self._ended = True
        out: list[StreamEvent] = [] if self._started else [MessageStart("", "")]
        out.extend(self._close_block())
        out.append(MessageEnd(stop_reason(self._finish, self._saw_tool), self._usage))
        return out

    def _candidate(self, candidate: dict) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        content = candidate.get("content")
        for part in (content.get("parts") if isinstance(content, dict) else None) or ():
            if isinstance(part, dict):
                for block in part_blocks(part):
                    out.extend(self._block(block))
        if candidate.get("finishReason"):
            self._finish = candidate["finishReason"]
        return out

    def _block(self, block) -> list[StreamEvent]:
        if isinstance(block, TextBlock):
            return self._switch("text", TextBlock("")) + [TextDelta(self._index, block.text)]
        if isinstance(block, ThinkingBlock) and block.text:
            out = self._switch("thinking", ThinkingBlock(""))
            out.append(ThinkingDelta(self._index, block.text, signature=block.signature))
            return out
        out = self._close_block()
        self._index += 1
        if isinstance(block, ThinkingBlock):  # a signature alone, ahead of its call
            return out + [BlockStart(self._index, ThinkingBlock("")),
                          ThinkingDelta(self._index, "", signature=block.signature),
                          BlockStop(self._index)]
        self._saw_tool = True
        return out + [BlockStart(self._index, ToolUseBlock(block.id, block.name, {})),
                      ToolArgsDelta(self._index, orjson.dumps(block.input).decode()),
                      BlockStop(self._index)]

    def _switch(self, kind: str, empty) -> list[StreamEvent]:
        if self._open == kind:
            return []
        out = self._close_block()
        self._open = kind
        self._index += 1
        out.append(BlockStart(self._index, empty))
        return out

    def _close_block(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        self._open = None
        return [BlockStop(self._index)]
