"""Shared by the dialects whose turns are lists of typed content blocks, Anthropic Messages
and Bedrock Converse: merging turns on the way out, and block bookkeeping in streams."""

from __future__ import annotations

import dataclasses
from typing import Callable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    Block, BlockStop, Message, MessageEnd, StopReason, StreamEvent, Usage,
)


def encode_turns(messages: list[Message], encode_block: Callable[[Block], dict | None]
                 ) -> list[dict]:
    """Wire turns ``{"role", "content": [blocks]}``. Both APIs reject empty turns and want
    roles to alternate, so empty turns are dropped (they say nothing) and consecutive turns
    of one role merged; ``encode_block`` returns None for a block the API would reject."""
    out: list[dict] = []
    last = None  # the turn at the end of ``out``
    for msg in messages:
        content = msg.content
        if len(content) == 1:  # most messages: one block, no comprehension to build
            block = encode_block(content[0])
            if block is None:
                continue
            blocks = [block]
        else:
            blocks = [b for b in map(encode_block, content) if b is not None]
            if not blocks:
                continue
        if last is not None and last["role"] == msg.role:
            last["content"] += blocks
        else:
            last = {"role": msg.role, "content": blocks}
            out.append(last)
    if not out:
        raise InvalidRequest("the request has no message content to send", param="messages")
    return out


class OpenBlocks:
    """The blocks a stream has started and not yet stopped, by index, oldest first (stream
    encoders and decoders alike): a block stops at most once, and every block still open
    when the message ends is stopped before the end."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: list[int] = []

    def __iter__(self):
        return iter(self._open)

    def start(self, index: int) -> None:
        self._open.append(index)

    def stop(self, index: int | None) -> bool:
        """True if block ``index`` was open; it is not any more."""
        if index is None or index not in self._open:
            return False
        self._open.remove(index)
        return True

    def end_message(self, stop_reason: StopReason, usage: Usage,
                    stop_sequence: str | None) -> list[StreamEvent]:
        """A ``BlockStop`` for each open block, then the ``MessageEnd``."""
        out: list[StreamEvent] = [BlockStop(i) for i in self._open]
        self._open.clear()
        out.append(MessageEnd(stop_reason=stop_reason, usage=dataclasses.replace(usage),
                              stop_sequence=stop_sequence))
        return out
