"""What a fake upstream answers, in provider-neutral terms. Each fake renders a ``Reply``
in its own provider's documented wire format (JSON body, SSE framing, error body), so one
script drives every provider in the conformance suite.

With no scripted reply queued, a fake answers ``Reply(text="echo: <last user text>")``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None  # the fake makes one up when None


@dataclass
class Reply:
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    # "end_turn" | "max_tokens" | "stop_sequence" | "tool_use"; None: derived
    # (tool_use when there are tool calls, else end_turn).
    stop: str | None = None
    stop_sequence: str | None = None
    input_tokens: int = 11
    output_tokens: int = 7
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # An error reply instead of a completion: HTTP status and message; the fake renders the
    # provider's documented error body (and Retry-After when retry_after is set).
    error_status: int | None = None
    error_message: str = "scripted failure"
    retry_after: float | None = None
    # Streaming: how many characters per text delta and per tool-argument delta.
    chunk_size: int = 3
    # Streaming faults: stop after this many SSE events without finishing the stream.
    truncate_after: int | None = None
    # Seconds to wait before answering (or between stream events).
    delay: float = 0.0
    event_delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServer:
    """Runs an aiohttp ``web.Application`` on its own loop in a thread.

    Subclasses fill ``self.app`` with routes; handlers take the next reply with
    ``self.next_reply(default_text)`` and record what they received in ``self.received``.
    """

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._runner = None
        # Set when a streaming client closed its connection before the stream ended.
        self.client_disconnected = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def build_app(self):  # -> aiohttp.web.Application
        raise NotImplementedError

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self, last_user_text: str) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        return Reply(text=f"echo: {last_user_text}")

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)

        async def start():
            self._runner = web.AppRunner(self.build_app())
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> "FakeServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def stop():
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
