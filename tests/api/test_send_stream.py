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


async def test_a_send_that_raises_once_the_client_is_gone_is_a_disconnect(tmp_path, caplog):
    # Under a server whose ``send`` raises when the client has gone, the stream is billed
    # as a client disconnect, not logged and billed as an internal error.
    from modelmart.api.app import create_app
    from modelmart.api.settings import Settings
    from modelmart.catalog.loader import parse_catalog
    from modelmart.dialects import openai_chat
    from modelmart.providers.streaming import sse_batches
    from modelmart.store import open_store
    from tests.harness import provision_key

    db = f"sqlite:///{tmp_path}/mm.db"
    key = await asyncio.to_thread(provision_key, db, "acme")
    price = {"input": 1, "output": 2, "caching": False}
    catalog = parse_catalog({"bundled_model": False, "models": {"m": {
        "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "model": "m",
        "api_key": "sk", "price": price, "cost": price}}})
    app = create_app(Settings(catalog=catalog, database_url=db, journal_dir=f"{tmp_path}/j"))
    await app.startup()
    chunks = [b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
              b'"choices":[{"index":0,"delta":{"content":"%d"},"finish_reason":null}]}\n\n' % i
              for i in range(3)]

    class Body:
        async def read(self):
            await asyncio.sleep(0)
            return chunks.pop(0) if chunks else b""

        async def aclose(self):
            pass

    async def open_body():
        return Body()

    provider = next(iter(app.providers.values()))
    provider.stream_batches = lambda req: sse_batches(open_body, openai_chat.StreamDecoder())
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "extensions": {},
             "headers": [(b"authorization", b"Bearer " + key.encode()),
                         (b"content-length", str(len(body)).encode())]}
    sent = []

    async def send(message):
        if len(sent) == 2:
            raise OSError("the client has gone")
        sent.append(message)

    async def receive():
        if not sent:
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    await app(scope, receive, send)
    await app.shutdown()
    store = await open_store(db)
    rows = await store.usage_rows()
    await store.close()
    assert "failed" not in caplog.text
    assert [(r.status, r.http_status) for r in rows] == [("client_disconnected", 499)]
