"""``api/http.send_stream`` under any ASGI server (no ``modelmart.disconnect`` extension): a
second task listens for ``http.disconnect``. modelmart's own server takes the other path,
which the end-to-end disconnect tests cover."""

from __future__ import annotations

import asyncio

from modelmart.api.http import send_stream


async def test_a_disconnect_stops_the_stream_and_closes_its_source():
    closed = asyncio.Event()

    async def frames():
        try:
            for i in range(1000):
                yield b"frame %d\n" % i
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    source = frames()
    assert await send_stream(send, receive, source) is False
    assert closed.is_set() and 1 < len(sent) < 100


async def test_a_finished_stream_ends_its_body():
    async def frames():
        yield b"a"
        yield b"b"

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        await asyncio.Event().wait()

    assert await send_stream(send, receive, frames(), scope={"extensions": {}}) is True
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b", b""]
    assert sent[-1]["more_body"] is False
