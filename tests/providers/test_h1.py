"""``providers/h1.py``, the upstream HTTP/1.1 client, against raw servers on loopback that
answer with exactly the bytes each case needs."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from modelmart.providers.base import UpstreamLimits
from modelmart.providers.h1 import (Client, ConnectTimeout, DeadlineExceeded, HTTPClosed,
                                    HTTPMalformed, LimitExceeded)


class RawServer:
    """Answers each request with the next scripted reply (bytes, or a callable taking the
    writer). Counts connections and records each request's head and body."""

    def __init__(self, *replies) -> None:
        self.replies = list(replies)
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if callable(reply):
                    await reply(writer)
                else:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def post(client: Client, url: str, body: bytes = b"{}", deadline: float | None = None):
    return await client.request("POST", url + "/v1/x", {"content-type": "application/json"},
                                body, connect_timeout=2, deadline=deadline, why="first")


async def test_connections_are_kept_alive_and_reused():
    async with RawServer(ok(b"one"), ok(b"two"), ok(b"three")) as server:
        client = Client()
        for expected in (b"one", b"two", b"three"):
            reply = await post(client, server.url, b'{"a":1}')
            assert reply.status == 200 and await reply.read() == expected
        assert server.connections == 1
        head = server.requests[0]
        assert head.startswith(b"POST /v1/x HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{server.port}".encode() in head
        assert b"content-length: 7" in head and head.endswith(b'{"a":1}')
        await client.close()


async def test_chunked_replies_arrive_as_they_come():
    async def chunked(writer):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(chunked, ok(b"after")) as server:
        client = Client()
        reply = await post(client, server.url)
        parts = []
        while chunk := await reply.next_chunk():
            parts.append(chunk)
        assert parts == [b"hello", b" world"]
        reply = await post(client, server.url)  # the stream was read to its end: reused
        assert await reply.read() == b"after" and server.connections == 1
        await client.close()


async def test_a_body_read_to_the_close_and_a_gzip_body():
    zipped = gzip.compress(b'{"x": "y"}')

    async def to_close(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with RawServer(to_close) as server:
        client = Client()
        assert await (await post(client, server.url)).read() == b"until the end"
    async with RawServer(ok(zipped, b"content-encoding: gzip\r\n")) as server:
        assert await (await post(client, server.url)).read() == b'{"x": "y"}'
        await client.close()


async def test_headers_and_error_statuses():
    reply_bytes = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nX-A: 1\r\nX-A: 2\r\n" \
                  b"content-length: 2\r\n\r\n{}"
    async with RawServer(reply_bytes) as server:
        client = Client()
        reply = await post(client, server.url)
        assert reply.status == 429 and reply.headers["retry-after"] == "3"
        assert reply.headers["x-a"] == "1, 2" and await reply.read() == b"{}"
        await client.close()


async def test_repeated_headers_are_joined_in_order():
    lines = b"".join(b"x-a: %d\r\n" % i for i in range(5))
    async with RawServer(b"HTTP/1.1 200 OK\r\n" + lines + b"x-b: 1\r\ncontent-length: 0\r\n\r\n"
                         ) as server:
        client = Client()
        reply = await post(client, server.url)
        assert reply.headers["x-a"] == "0, 1, 2, 3, 4" and reply.headers["x-b"] == "1"
        await client.close()


async def test_what_an_upstream_sends_is_bounded():
    """Each bound: one byte more than it allows fails the reply with ``LimitExceeded``
    naming it, and the connection is dropped; exactly the bound is fine."""
    limits = UpstreamLimits(header_bytes=1000, headers=10, body_bytes=5000)
    server_gone = asyncio.Event()

    async def long_header(writer):  # one header in many pieces: llhttp gathers it
        writer.write(b"HTTP/1.1 200 OK\r\nx-pad: ")
        for _ in range(100):
            writer.write(b"a" * 100)
            await writer.drain()
            await asyncio.sleep(0.001)
            if writer.transport.is_closing() or server_gone.is_set():
                return

    many = b"HTTP/1.1 200 OK\r\n" + b"x: 1\r\n" * 11 + b"content-length: 0\r\n\r\n"
    zipped = gzip.compress(bytes(50_000))
    replies = {
        "header_bytes": long_header,
        "headers": many,
        "body_bytes": ok(b"x" * 5001),
        "gzip": ok(zipped, b"content-encoding: gzip\r\n"),
    }
    for field, reply in replies.items():
        async with RawServer(reply) as server:
            client = Client(limits=limits, proxies={})
            with pytest.raises(LimitExceeded) as info:
                await (await post(client, server.url)).read()
            assert info.value.field == ("body_bytes" if field == "gzip" else field)
            await asyncio.sleep(0.01)  # the abort's connection_lost
            assert not client._open and not client._idle.get(("http", "127.0.0.1", server.port))
            await client.close()
        server_gone.set()
    async with RawServer(ok(b"x" * 5000), ok(gzip.compress(bytes(5000)),
                                               b"content-encoding: gzip\r\n")) as server:
        client = Client(limits=limits, proxies={})
        assert len(await (await post(client, server.url)).read()) == 5000
        assert await (await post(client, server.url)).read() == bytes(5000)
        await client.close()


async def test_interim_replies_are_skipped():
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + ok(b"the answer")
    async with RawServer(early, ok(b"next")) as server:
        client = Client()
        reply = await post(client, server.url)
        assert reply.status == 200 and "link" not in reply.headers
        assert await reply.read() == b"the answer"
        assert await (await post(client, server.url)).read() == b"next"
        await client.close()


async def test_a_pooled_connection_the_server_closed_is_not_reused():
    async def answer_then_close(writer):
        writer.write(ok(b"first"))
        await writer.drain()
        writer.close()  # the upstream drops the kept-alive connection

    async with RawServer(answer_then_close, ok(b"second")) as server:
        client = Client()
        assert await (await post(client, server.url)).read() == b"first"
        await asyncio.sleep(0.05)
        assert await (await post(client, server.url)).read() == b"second"
        assert server.connections == 2
        await client.close()


async def test_a_request_is_never_sent_twice():
    async def reset(writer):
        writer.transport.abort()  # took the request, then hung up without a word

    async with RawServer(ok(b"first"), reset, ok(b"never")) as server:
        client = Client()
        assert await (await post(client, server.url)).read() == b"first"
        with pytest.raises(HTTPClosed, match="before replying"):
            await post(client, server.url)
        assert len(server.requests) == 2
        await client.close()


async def test_a_reply_cut_short_is_an_error():
    async def cut(writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a little")
        await writer.drain()
        writer.transport.abort()

    async with RawServer(cut) as server:
        client = Client()
        reply = await post(client, server.url)
        with pytest.raises(HTTPClosed, match="middle of the reply"):
            await reply.read()
        await client.close()


async def test_garbage_is_malformed():
    async with RawServer(b"SPDY/9 what\r\n\r\n") as server:
        client = Client()
        with pytest.raises(HTTPMalformed):
            await post(client, server.url)
        await client.close()


async def test_a_missed_deadline_raises_and_drops_the_connection():
    async def never(writer):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass

    async with RawServer(never) as server:
        client = Client()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded) as info:
            await post(client, server.url, deadline=started + 0.2)
        assert info.value.args == ("first",) and loop.time() - started < 1
        await asyncio.sleep(0.01)
        assert not client._open
        await client.close()


async def test_a_stream_read_slowly_stops_the_socket_and_loses_nothing():
    big = b"x" * (4 << 20)

    async with RawServer(ok(big)) as server:
        client = Client()
        reply = await post(client, server.url)
        got = bytearray()
        while chunk := await reply.next_chunk():
            got += chunk
            await asyncio.sleep(0)
        assert bytes(got) == big
        await client.close()


async def test_no_listener_is_a_connection_error_and_connect_timeout_is_its_own():
    client = Client()
    with pytest.raises(ConnectionRefusedError):
        await post(client, "http://127.0.0.1:9")
    async with RawServer(ok(b"")) as server:  # no time at all to connect
        with pytest.raises(ConnectTimeout):
            await client.request("POST", server.url, {}, b"", connect_timeout=0)
    await client.close()


def test_header_injection_is_refused():
    with pytest.raises(ValueError, match="line break"):
        Client._head("POST", Client().target("http://h/x"), {"x-a": "1\r\nx-b: 2"}, b"")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl, from the Debian base image)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_https_with_a_verified_certificate(certificate):
    import ssl

    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = RawServer(ok(b"over tls"), ok(b"again"))
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.server.sockets[0].getsockname()[1]
    try:
        client = Client(tls=ssl.create_default_context(cafile=str(cert)))
        url = f"https://127.0.0.1:{port}"
        assert await (await post(client, url)).read() == b"over tls"
        assert await (await post(client, url)).read() == b"again"
        assert server.connections == 1  # kept alive over TLS too
        await client.close()
        untrusting = Client()  # the system's trust store does not know this certificate
        with pytest.raises(ssl.SSLError):
            await post(untrusting, url)
        await untrusting.close()
    finally:
        server.server.close()
