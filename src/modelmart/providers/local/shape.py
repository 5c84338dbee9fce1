"""Generated text to canonical stream events, and stream events to a ``Response``.

Plain text streams as it comes. Output that may be a tool call is held back: all of it when
the grammar forces a call, and with tool choice "auto" only once it starts with "{" (the
model was told to answer with a JSON object to call a tool), so plain answers still stream.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from modelmart.core.errors import InternalError
from modelmart.core.ids import new_id
from modelmart.core.types import (
    BlockStart,
    BlockStop,
    MessageEnd,
    MessageStart,
    Response,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolArgsDelta,
    ToolUseBlock,
    Usage,
)

from .generate import Finished


class Shaper:
    def __init__(self, tool_names: list[str], forced_tool: bool) -> None:
        self._tool_names = tool_names
        # None: undecided yet; True: holding output back; False: streaming text.
        self._holding: bool | None = True if forced_tool else (None if tool_names else False)
        self._buffer = ""
        self._text_open = False

    def feed(self, piece: str) -> list[StreamEvent]:
        if self._holding is False:
            return self._text(piece)
        self._buffer += piece
        start = self._buffer.lstrip()
        if self._holding is None and start:
            self._holding = start.startswith("{")
            if not self._holding:
                piece, self._buffer = self._buffer, ""
                return self._text(piece)
        return []

    def finish(self, done: Finished, usage: Usage) -> list[StreamEvent]:
        call = parse_tool_call(self._buffer, self._tool_names)
        if call is not None:
            events = _tool_call_events(*call)
            stop_reason, stop_sequence = "tool_use", None
        else:
            events = self._text(self._buffer) if self._buffer or not self._text_open else []
            stop_reason, stop_sequence = done.stop_reason, done.stop_sequence
        events.append(BlockStop(0))
        events.append(MessageEnd(stop_reason, _copy(usage), stop_sequence))
        return events

    def _text(self, piece: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not self._text_open:
            self._text_open = True
            events.append(BlockStart(0, TextBlock("")))
        if piece:
            events.append(TextDelta(0, piece))
        return events


def parse_tool_call(text: str, tool_names: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) when ``text`` is {"name": <a known tool>, "arguments": {...}}."""
    if not tool_names or not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"name", "arguments"}:
        return None
    if data["name"] not in tool_names or not isinstance(data["arguments"], dict):
        return None
    return data["name"], data["arguments"]


def _tool_call_events(name: str, arguments: dict[str, Any]) -> list[StreamEvent]:
    return [
        BlockStart(0, ToolUseBlock(new_id("call_"), name, {})),
        ToolArgsDelta(0, json.dumps(arguments, ensure_ascii=False)),
    ]


def _copy(usage: Usage) -> Usage:
    return Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


async def collect(events: AsyncIterator[StreamEvent]) -> Response:
    """The ``Response`` a stream adds up to."""
    start: MessageStart | None = None
    end: MessageEnd | None = None
    blocks: list[Any] = []
    args: list[str] = []
    async for ev in events:
        if isinstance(ev, MessageStart):
            start = ev
        elif isinstance(ev, BlockStart):
            blocks.append(ev.block)
        elif isinstance(ev, TextDelta):
            blocks[-1].text += ev.text
        elif isinstance(ev, ToolArgsDelta):
            args.append(ev.partial_json)
        elif isinstance(ev, MessageEnd):
            end = ev
    if args:
        blocks[-1].input = json.loads("".join(args))
    if start is None or end is None:
        raise InternalError("local model stream ended without a result")
    return Response(
        id=start.id,
        model=start.model,
        content=blocks,
        stop_reason=end.stop_reason,
        stop_sequence=end.stop_sequence,
        usage=end.usage,
        created=start.created,
    )
