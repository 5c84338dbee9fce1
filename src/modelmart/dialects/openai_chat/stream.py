"""Streamed chat completions: ``chat.completion.chunk`` SSE frames, both ways."""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelmart.core.errors import UpstreamError
from modelmart.core.ids import new_id
from modelmart.core.types import (
    BlockStart,
    BlockStop,
    MessageEnd,
    MessageStart,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolArgsDelta,
    ToolUseBlock,
    Usage,
)
from modelmart.dialects.sse import json_chunk, sse

from .errors import encode_error, stream_error
from .fastpath import PAD_END, Template, TextRun, derive, learn, literal_in
from .usage import decode_usage, encode_usage, finish_reason, stop_reason

DONE = b"data: [DONE]\n\n"


class StreamEncoder:
    """Canonical events -> SSE frames a client of the OpenAI SDK reads as ChatCompletionChunks."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""  # the MessageStart's, or one of ours if it brings none
        self.created = int(time.time())
        self._tool_index: dict[int, int] = {}  # canonical block index -> OpenAI tool_calls index
        self._head: bytes | None = None  # every chunk's opening, up to its choices
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def event(self, ev: StreamEvent) -> bytes:
        cls = type(ev)
        if cls is TextDelta:  # the bulk of a stream: written without building the chunk
            if not ev.text:
                return b""
            return b"".join((self._head or self._make_head(), _TEXT_OPEN, orjson.dumps(ev.text),
                             _TEXT_CLOSE, self._tail))
        if cls is TextRun:  # a chunk per literal, as the upstream wrote it, in one join
            opening = (self._head or self._make_head()) + _TEXT_OPEN
            closing = _TEXT_CLOSE + self._tail
            return opening + (closing + opening).join(ev.literals) + closing
        if isinstance(ev, MessageStart):
            self.id = ev.id or self.id or new_id("chatcmpl-")
            self.created = ev.created or self.created
            self._head = None
            return b"".join((self._make_head(), _ROLE_CHOICES, self._tail))
        if isinstance(ev, TextDelta):
            return self._chunk({"content": ev.text}) if ev.text else b""
        if isinstance(ev, ThinkingDelta):
            return self._chunk({"reasoning_content": ev.text}) if ev.text else b""
        if isinstance(ev, BlockStart) and isinstance(ev.block, ToolUseBlock):
            return self._tool_start(ev.index, ev.block)
        if isinstance(ev, ToolArgsDelta):
            call = {"index": self._tool_index.get(ev.index, 0), "function": {"arguments": ev.partial_json}}
            return self._chunk({"tool_calls": [call]})
        if isinstance(ev, MessageEnd):
            return self._end(ev)
        return b""  # BlockStart of text/thinking and BlockStop have no OpenAI frame

    def error(self, err: BaseException) -> bytes:
        # The openai SDK raises APIError for a data payload carrying an "error" object.
        return sse(orjson.dumps(encode_error(err)[1]))

    def end(self) -> bytes:
        return DONE

    def _tool_start(self, index: int, block: ToolUseBlock) -> bytes:
        n = self._tool_index[index] = len(self._tool_index)
        # Canonical streams start tool calls with input {}; a producer that already knows
        # the whole input gives it here, and it must not be lost.
        args = orjson.dumps(block.input).decode() if block.input else ""
        call = {"index": n, "id": block.id, "type": "function", "function": {"name": block.name, "arguments": args}}
        return self._chunk({"tool_calls": [call]})

    def _end(self, ev: MessageEnd) -> bytes:
        finish = finish_reason(ev.stop_reason)
        choices = _FINISH_CHOICES.get(finish)
        if choices is None:
            out = self._chunk({}, finish)
        else:
            out = b"".join((self._head or self._make_head(), choices, self._tail))
        if self.include_usage:
            out += self._frame([], encode_usage(ev.usage))
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame([choice], None)

    def _frame(self, choices: list, usage: dict | None) -> bytes:
        # As OpenAI does, with include_usage: "usage" is null on every chunk but the last.
        tail = self._tail if usage is None else b',"usage":' + orjson.dumps(usage) + b"}\n\n"
        return b"".join((self._head or self._make_head(), orjson.dumps(choices), tail))

    def _make_head(self) -> bytes:
        self.id = self.id or new_id("chatcmpl-")
        self._head = b"".join((
            b'data: {"id":', orjson.dumps(self.id), b',"object":"chat.completion.chunk",'
            b'"created":', orjson.dumps(self.created), b',"model":', orjson.dumps(self.model),
            b',"system_fingerprint":null,"choices":'))
        return self._head


_TEXT_OPEN = b'[{"index":0,"delta":{"content":'
_TEXT_CLOSE = b'},"logprobs":null,"finish_reason":null}]'
# The first and the last chunk's choices, as ``_chunk`` would encode them.
_ROLE_CHOICES = b'[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]'
_FINISH_CHOICES = {f: b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}]' % f.encode()
                   for f in ("stop", "length", "tool_calls", "content_filter")}


class StreamDecoder:
    """Upstream SSE data payloads -> canonical events.

    OpenAI sends the finish_reason before the usage chunk, so MessageEnd is held back until
    ``[DONE]`` (or ``close()``) to carry the final usage. ``[DONE]`` is the upstream saying
    it finished, so it ends the message even without a finish_reason (end_turn); a body that
    just stops before any finish_reason is a failure.
    """

    # The state every stream starts in, as class attributes: an instance sets only what
    # changes (a decoder is made per stream, and most streams are text only).
    _started = False
    _ended = False
    _open: tuple | None = None  # ("text",), ("thinking",) or ("tool", openai index)
    _index = -1  # canonical index of the open block
    _closed_tools: frozenset[int] | set[int] = frozenset()  # a set of its own once used
    _finish: str | None = None
    _saw_tool = False
    _usage: Usage | None = None  # the upstream's final usage, once reported
    _template: Template | None = None  # text chunks' (see feed_datas)
    _finishing: Template | None = None  # the finishing chunk's
    _learning = 3  # text chunks left to learn a template from
    _runs = False  # template hits become TextRun events

    def __init__(self, runs: bool = False) -> None:
        if runs:
            self._runs = True

    def feed(self, event_name: str | None, data: bytes) -> list[StreamEvent]:
        if self._ended:
            return []
        if data == b"[DONE]" or (data[:1] != b"{" and data.strip() == b"[DONE]"):
            return self._finish_events(done=True)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = json_chunk(data)  # raises the error that says what is wrong
        return self._chunk(chunk, data)

    def feed_datas(self, datas: list[bytes], batch: list[StreamEvent]) -> None:
        """``feed`` for the data payloads of one upstream read, appending to ``batch``.

        A chunk that fits the stream's text template (``fastpath``) has only its text's
        literal parsed, and the finishing chunk likewise its reason. The templates are
        usually derived from the first chunk, so the first text chunk already takes them;
        otherwise the text template is learned from a text chunk. Anything else takes
        ``feed``'s path. With ``runs``, the texts of consecutive template hits travel as
        one ``TextRun``."""
        loads = orjson.loads
        for data in datas:
            if self._ended:  # what feed would say
                continue
            # literal_in(self._template, data), written out: most chunks are these
            tpl, literal = self._template, None
            if tpl is not None and data.startswith(tpl[0]):
                head, hlen, tail, tlen, padded = tpl
                if padded:
                    at = data.rfind(tail)
                    if at >= hlen and data[-2:] == PAD_END and data[at + tlen:-2].isalnum():
                        literal = data[hlen:at]
                else:
                    at = len(data) - tlen
                    if at >= hlen and data.endswith(tail):
                        literal = data[hlen:at]
            if literal:
                try:
                    text = loads(literal)
                except orjson.JSONDecodeError:
                    text = None
                if type(text) is str:
                    if text:
                        if self._open is not _TEXT:
                            batch += self._switch(_TEXT, _text_block)
                        if not self._runs:
                            batch.append(TextDelta(self._index, text))
                        elif batch and type(run := batch[-1]) is TextRun:
                            run.literals.append(literal)
                            run.text += text
                        else:
                            batch.append(TextRun(self._index, text, [literal]))
                    continue
            if self._finishing is not None and (literal := literal_in(self._finishing, data)):
                try:
                    reason = loads(literal)
                except orjson.JSONDecodeError:
                    reason = None
                if type(reason) is str:
                    if reason:
                        self._finish = reason
                    continue
            if data[:1] != b"{" or (self._started and not self._learning):
                batch += self.feed(None, data)
                continue
            try:
                chunk = loads(data)
            except orjson.JSONDecodeError:
                batch += self.feed(None, data)
                continue
            first = not self._started
            events = self._chunk(chunk, data)
            batch += events
            if first:
                self._template, self._finishing = derive(data, chunk)
            elif events and type(events[-1]) is TextDelta:
                self._learning -= 1
                self._template = learn(data) or self._template
                if self._template is not None:
                    self._learning = 0

    def _chunk(self, chunk: Any, data: bytes) -> list[StreamEvent]:
        if type(chunk) is not dict:
            chunk = json_chunk(data)
        if chunk.get("error"):
            raise stream_error(chunk["error"])
        choices = chunk.get("choices")
        if self._started and chunk.get("usage") is None:  # most chunks: one choice's delta
            if type(choices) is list and choices and type(choices[0]) is dict:
                return self._choice(choices[0])
            return []
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            created = chunk.get("created")
            out.append(MessageStart(str(chunk.get("id") or ""), str(chunk.get("model") or ""),
                                    created=created if isinstance(created, int) else 0))
        if isinstance(chunk.get("usage"), dict):
            self._usage = decode_usage(chunk["usage"])
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            out.extend(self._choice(choices[0]))
        return out

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        return self._finish_events(done=False)

    def _finish_events(self, done: bool) -> list[StreamEvent]:
        if self._finish is None and not done:
            raise UpstreamError("upstream stream ended before it finished")
        self._ended = True
        out = [] if self._started else [MessageStart("", "")]
        out.extend(self._close_block())
        out.append(MessageEnd(stop_reason(self._finish, self._saw_tool), self._usage or Usage()))
        return out

    def _choice(self, choice: dict) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        delta = choice.get("delta")
        if type(delta) is dict:
            if "reasoning_content" in delta or "reasoning" in delta:
                thinking = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(thinking, str) and thinking:
                    if self._open != _THINKING:
                        out.extend(self._switch(_THINKING, _thinking_block))
                    out.append(ThinkingDelta(self._index, thinking))
            text = delta.get("content")
            if text and type(text) is str:
                if self._open != _TEXT:
                    out.extend(self._switch(_TEXT, _text_block))
                out.append(TextDelta(self._index, text))
            calls = delta.get("tool_calls")
            if calls:
                for call in calls:
                    out.extend(self._tool_delta(call))
        finish = choice.get("finish_reason")
        if finish:
            self._finish = finish
        return out

    def _tool_delta(self, call: Any) -> list[StreamEvent]:
        if not isinstance(call, dict):
            raise UpstreamError("upstream stream has a malformed tool call delta")
        n = call.get("index", 0)
        if not isinstance(n, int):
            raise UpstreamError("upstream stream has a tool call delta without an integer index")
        if n in self._closed_tools:
            raise UpstreamError("upstream interleaved tool call arguments; not supported")
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        out = self._switch(("tool", n), lambda: _new_tool_block(call, fn))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(ToolArgsDelta(self._index, args))
        return out

    def _switch(self, key: tuple, make_block) -> list[StreamEvent]:
        if self._open == key:
            return []
        out = self._close_block()
        self._open = key
        self._index += 1
        block = make_block()
        self._saw_tool = self._saw_tool or isinstance(block, ToolUseBlock)
        out.append(BlockStart(self._index, block))
        return out

    def _close_block(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        if self._open[0] == "tool":
            if not self._closed_tools:
                self._closed_tools = set()
            self._closed_tools.add(self._open[1])
        self._open = None
        return [BlockStop(self._index)]


_TEXT, _THINKING = ("text",), ("thinking",)


def _text_block() -> TextBlock:
    return TextBlock("")


def _thinking_block() -> ThinkingBlock:
    return ThinkingBlock("")


def _new_tool_block(call: dict, fn: dict) -> ToolUseBlock:
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise UpstreamError("upstream stream started a tool call without a function name")
    return ToolUseBlock(str(call.get("id") or new_id("call_")), name, {})

