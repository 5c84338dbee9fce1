"""Fake upstreams that misbehave on cue: the OpenAI and Anthropic fakes plus scripted faults.

Queue a ``Fault`` where a ``Reply`` would go; the request that takes it gets the fault, the
next ones get the following script items (a ``Reply`` or another ``Fault``) or the default
echo. HTTP error statuses (429 with Retry-After, 500, 503, 529) need no fault: they are
``Reply(error_status=..., retry_after=...)``, rendered in each provider's documented error
shape by the fakes themselves.

    fake = FaultyOpenAI().start()
    fake.queue(Fault("stall"), Fault("slow_first_token", seconds=0.2), Reply(text="ok"))
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from dataclasses import dataclass, field

from aiohttp import web

from .anthropic_server import FakeAnthropic, message, stream_events
from .openai_server import FakeOpenAI, _Completion
from .script import Received, Reply

KINDS = (
    "reset",             # close the connection with a TCP reset, before any reply
    "stall",             # accept the request and never answer
    "malformed_json",    # 200 with a body that is not JSON (for a stream: a non-JSON event)
    "slow_first_token",  # wait ``seconds`` (after the headers, for a stream), then answer
    "stall_mid_stream",  # send ``after_events`` events, then go silent
    "truncated_stream",  # send ``after_events`` events and half of the next, then reset
    "slow_stream",       # a stream whose events come ``seconds`` apart
)
# A stalled handler gives up after this long even if the client never hangs up.
STALL_LIMIT = 30.0


@dataclass
class Fault:
    kind: str
    seconds: float = 0.0
    after_events: int = 2
    # What a fault that does answer (slow_first_token, the stream faults) answers.
    reply: Reply = field(default_factory=lambda: Reply(text="a reply from a faulty upstream"))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(KINDS)}")


class _FaultMixin:
    """Fault handling shared by both wire formats; subclasses render frames and bodies."""

    replies: list
    received: list

    def take_fault(self) -> Fault | None:
        if self.replies and isinstance(self.replies[0], Fault):
            return self.replies.pop(0)
        return None

    async def perform(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.received.append(Received(request.path, dict(request.headers), body))
        model = body.get("model", "")
        if fault.kind == "reset":
            return self._reset(request)
        if fault.kind == "stall":
            await self._stall(request)
            return web.Response(status=504)
        if body.get("stream"):
            return await self._stream_fault(request, fault, self.frames(fault.reply, model, body))
        if fault.kind == "malformed_json":
            return web.Response(status=200, body=b'{"id": "chatcmpl-1", "choices": [',
                                content_type="application/json")
        await asyncio.sleep(fault.seconds)
        return web.json_response(self.whole(fault.reply, model))

    async def _stream_fault(self, request: web.Request, fault: Fault,
                            frames: list[bytes]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "cache-control": "no-cache"})
        await resp.prepare(request)
        if fault.kind == "malformed_json":
            frames = [b"data: {this is not json\n\n"]
        elif fault.kind == "slow_first_token":
            await asyncio.sleep(fault.seconds)
        elif fault.kind in ("stall_mid_stream", "truncated_stream"):
            cut = frames[fault.after_events]
            frames = frames[:fault.after_events]
        try:
            for i, frame in enumerate(frames):
                if i and fault.kind == "slow_stream":
                    await asyncio.sleep(fault.seconds)
                await resp.write(frame)
            if fault.kind == "stall_mid_stream":
                await self._stall(request)
            elif fault.kind == "truncated_stream":
                await resp.write(cut[: len(cut) // 2])
                await asyncio.sleep(0.01)  # let the half frame leave before the reset
                return self._reset(request)
            else:
                await resp.write_eof()
        except ConnectionError:
            self.client_disconnected.set()  # type: ignore[attr-defined]
        return resp

    def _reset(self, request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends RST instead of FIN, as a crashed proxy would.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)  # never delivered: the connection is gone

    async def _stall(self, request: web.Request) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + STALL_LIMIT
        while loop.time() < give_up:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.client_disconnected.set()  # type: ignore[attr-defined]
                return
            await asyncio.sleep(0.01)

    def frames(self, reply: Reply, model: str, body: dict) -> list[bytes]:
        raise NotImplementedError

    def whole(self, reply: Reply, model: str) -> dict:
        raise NotImplementedError


class FaultyOpenAI(_FaultMixin, FakeOpenAI):
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        fault = self.take_fault()
        if fault is None:
            return await super()._chat(request)
        return await self.perform(request, fault)

    def frames(self, reply: Reply, model: str, body: dict) -> list[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = [json.dumps(c) for c in _Completion(reply, model).chunks(include_usage)]
        return [f"data: {c}\n\n".encode() for c in chunks + ["[DONE]"]]

    def whole(self, reply: Reply, model: str) -> dict:
        return _Completion(reply, model).whole()


class FaultyAnthropic(_FaultMixin, FakeAnthropic):
    async def messages(self, request: web.Request) -> web.StreamResponse:
        fault = self.take_fault()
        if fault is None:
            return await super().messages(request)
        return await self.perform(request, fault)

    def frames(self, reply: Reply, model: str, body: dict) -> list[bytes]:
        return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                for name, data in stream_events(reply, model)]

    def whole(self, reply: Reply, model: str) -> dict:
        return message(reply, model)
