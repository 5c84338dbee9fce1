"""uvicorn's protocol test cases (encode/uvicorn ``tests/protocols/test_http.py``), ported as
our own: each runs over a real socket against modelmart's server and against uvicorn, so
our behaviour is pinned by someone else's expectations. Where we deliberately differ the
case says so (``DIFFERS``) and checks each server for its own answer.

Not ported: ``max_concurrency`` (uvicorn's ``limit_concurrency``; our caps on connections
are in ``test_caps.py``), the WebSocket cases (no WebSockets here), the ASGI 2 ``scopes``
case (ASGI 3 only), the h11 ``huge_headers`` variants (uvicorn's other parser)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from .asgi import Response
from .serving import KINDS, serve, talk

GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: example.org\r\n\r\n"
POST = (b"POST / HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\n"
        b"Content-Length: 18\r\n\r\n{\"hello\": \"world\"}")
CLOSE_GET = b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
CLOSE_POST = (b"POST / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: 18\r\n\r\n{'hello': 'world'}")
START_POST = (b"POST / HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\n"
              b"Content-Length: 18\r\n\r\n")
EXPECT_POST = (b"POST / HTTP/1.1\r\nHost: example.org\r\nExpect: 100-continue\r\n"
               b"Content-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"hello\": \"world\"}")
HELLO = Response("Hello, world", media_type="text/plain")
# The servers' differences the cases below pin down.
DIFFERS = {
    "header_splitting": "an invalid response header is an app error: ours answers 500 "
                        "(nothing of the header is written), uvicorn closes without a reply",
    "early_response": "a reply before the request body was read: ours closes the connection "
                      "(what follows can't be trusted as the next request), uvicorn reads on",
    "huge_headers": "ours bounds a request head at 64 KiB (Limits.max_head): 431 beyond",
}


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


def run(app, kind: str, *parts: bytes, quiet: float = 0.5, pause: float = 0.05,
        **options) -> tuple[bytes, bool]:
    with serve(app, kind, **options) as served:
        return talk(served.port, *parts, quiet=quiet, pause=pause)


async def echo_body(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        assert message["type"] == "http.request"
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await Response(b"Body: " + body, media_type="text/plain")(scope, receive, send)


def test_get_request(kind):
    out, _ = run(HELLO, kind, GET)
    assert b"HTTP/1.1 200 OK" in out and b"Hello, world" in out


@pytest.mark.parametrize("char", ["c", "\t", " ", "µ"], ids=["letter", "tab", "space", "non-ascii"])
def test_header_value_allowed_characters(kind, char):
    app = Response("Hello, world", media_type="text/plain", headers={"key": f"<{char}>"})
    out, _ = run(app, kind, GET)
    assert b"HTTP/1.1 200 OK" in out
    assert b"\r\nkey: <" + char.encode() + b">\r\n" in out


@pytest.mark.parametrize("path", ["/", "/?foo", "/?foo=bar", "/?foo=bar&baz=1"])
def test_request_logging(kind, path, caplog):
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    caplog.set_level(logging.INFO, logger="modelmart.access")
    run(HELLO, kind, f"GET {path} HTTP/1.1\r\nHost: example.org\r\n\r\n".encode(), access_log=True)
    assert any(f'"GET {path} HTTP/1.1" 200' in r.getMessage() for r in caplog.records)


def test_head_request(kind):
    out, _ = run(HELLO, kind, HEAD)
    assert b"HTTP/1.1 200 OK" in out and b"Hello, world" not in out


def test_post_request(kind):
    out, _ = run(echo_body, kind, POST)
    assert b"HTTP/1.1 200 OK" in out and b'Body: {"hello": "world"}' in out


def test_keepalive(kind):
    out, closed = run(Response(b"", status_code=204), kind, GET)
    assert b"HTTP/1.1 204 No Content" in out and not closed


def test_keepalive_timeout(kind):
    with serve(Response(b"", status_code=204), kind, keepalive=1) as served:
        with served.connect() as sock:
            sock.sendall(GET)
            sock.settimeout(0.5)
            assert b"HTTP/1.1 204 No Content" in sock.recv(65536)
            with pytest.raises(TimeoutError):
                sock.recv(65536)  # still open half a second on
            sock.settimeout(4)
            assert sock.recv(65536) == b""  # closed after the keep-alive timeout


def test_keepalive_timeout_with_pipelined_requests(kind):
    with serve(HELLO, kind, keepalive=1) as served:
        with served.connect() as sock:
            sock.sendall(GET + GET)
            time.sleep(0.3)
            sock.settimeout(0.3)
            assert sock.recv(65536).count(b"HTTP/1.1 200 OK") == 2
            sock.settimeout(4)
            assert sock.recv(65536) == b""


def test_close(kind):
    out, closed = run(Response(b"", status_code=204, headers={"connection": "close"}), kind, GET)
    assert b"HTTP/1.1 204 No Content" in out and closed


def test_chunked_encoding(kind):
    app = Response(b"Hello, world!", headers={"transfer-encoding": "chunked"})
    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 200 OK" in out and b"0\r\n\r\n" in out and not closed


def test_chunked_encoding_empty_body(kind):
    app = Response(b"Hello, world!", headers={"transfer-encoding": "chunked"})
    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 200 OK" in out and out.count(b"0\r\n\r\n") == 1 and not closed


def test_chunked_encoding_head_request(kind):
    app = Response(b"Hello, world!", headers={"transfer-encoding": "chunked"})
    out, closed = run(app, kind, HEAD)
    assert b"HTTP/1.1 200 OK" in out and not closed


def test_pipelined_requests(kind):
    out, _ = run(HELLO, kind, GET + GET + GET)
    assert out.count(b"HTTP/1.1 200 OK") == 3 and out.count(b"Hello, world") == 3


def test_undersized_response(kind):  # uvicorn: test_undersized_request
    out, closed = run(Response(b"xxx", headers={"content-length": "10"}), kind, GET)
    assert closed


def test_oversized_response(kind):  # uvicorn: test_oversized_request
    out, closed = run(Response(b"xxx" * 20, headers={"content-length": "10"}), kind, GET)
    assert closed and b"xxx" * 4 not in out


def test_large_post_request(kind):
    body = b"x" * 100_000
    out, _ = run(echo_body, kind, b"POST / HTTP/1.1\r\nHost: example.org\r\nContent-Type: "
                                  b"text/plain\r\nContent-Length: 100000\r\n\r\n" + body)
    assert b"HTTP/1.1 200 OK" in out and out.endswith(b"Body: " + body)


def test_invalid_http(kind):
    out, closed = run(HELLO, kind, b"x" * 100_000)
    assert closed and b"Hello" not in out


def test_app_exception(kind):
    async def app(scope, receive, send):
        raise Exception()

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 500 Internal Server Error" in out and closed


def test_exception_during_response(kind):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"1", "more_body": True})
        raise Exception()

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 500 Internal Server Error" not in out and closed


def test_no_response_returned(kind):
    async def app(scope, receive, send):
        pass

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 500 Internal Server Error" in out and closed


def test_partial_response_returned(kind):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 500 Internal Server Error" not in out and closed


def test_response_header_splitting(kind):
    app = Response(b"", headers={"key": "value\r\nCookie: smuggled=value"})
    out, closed = run(app, kind, GET)
    assert b"\r\nCookie: smuggled=value\r\n" not in out and closed
    if kind == "modelmart":  # DIFFERS["header_splitting"]
        assert out.startswith(b"HTTP/1.1 500 Internal Server Error")
    else:
        assert b"HTTP/1.1 500 Internal Server Error" not in out


def test_duplicate_start_message(kind):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.start", "status": 200})

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 500 Internal Server Error" not in out and closed


def test_missing_start_message(kind):
    async def app(scope, receive, send):
        await send({"type": "http.response.body", "body": b""})

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 500 Internal Server Error" in out and closed


def test_message_after_body_complete(kind):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.body", "body": b""})

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 200 OK" in out and closed


def test_value_returned(kind):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})
        return 123

    out, closed = run(app, kind, GET)
    assert b"HTTP/1.1 200 OK" in out and closed


def test_early_disconnect(kind):
    got_disconnect = threading.Event()

    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass
        got_disconnect.set()

    with serve(app, kind) as served:
        with served.connect() as sock:
            sock.sendall(POST)
        assert got_disconnect.wait(3)


def test_early_response(kind):
    with serve(HELLO, kind) as served, served.connect() as sock:
        sock.sendall(START_POST)
        sock.settimeout(1)
        reply = b""
        while not reply.endswith(b"Hello, world"):
            reply += sock.recv(65536)
        assert b"HTTP/1.1 200 OK" in reply
        sock.sendall(b'{"hello": "world"}')
        sock.settimeout(3)
        try:
            rest = sock.recv(65536)
        except TimeoutError:
            rest = None
    if kind == "modelmart":  # DIFFERS["early_response"]
        assert rest == b""
    else:
        assert rest is None  # still open


def test_read_after_response(kind):
    after = []

    async def app(scope, receive, send):
        await HELLO(scope, receive, send)
        after.append(await receive())

    out, _ = run(app, kind, POST)
    assert b"HTTP/1.1 200 OK" in out and after == [{"type": "http.disconnect"}]


def test_http10_request(kind):
    async def app(scope, receive, send):
        content = "Version: %s" % scope["http_version"]
        await Response(content, media_type="text/plain")(scope, receive, send)

    out, _ = run(app, kind, b"GET / HTTP/1.0\r\nHost: example.org\r\n\r\n")
    assert b"HTTP/1.1 200 OK" in out and b"Version: 1.0" in out


def test_root_path(kind):
    async def app(scope, receive, send):
        text = f"root_path={scope.get('root_path', '')} path={scope['path']}"
        await Response(text, media_type="text/plain")(scope, receive, send)

    out, _ = run(app, kind, GET, root_path="/app")
    assert b"HTTP/1.1 200 OK" in out and b"root_path=/app path=/app/" in out


def test_raw_path(kind):
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["path"], scope.get("raw_path")))
        await Response("Done", media_type="text/plain")(scope, receive, send)

    out, _ = run(app, kind, b"GET /one%2Ftwo HTTP/1.1\r\nHost: example.org\r\n\r\n",
                 root_path="/app")
    assert b"Done" in out and seen == [("/app/one/two", b"/app/one%2Ftwo")]


def test_shutdown_during_request(kind):
    async def app(scope, receive, send):
        await asyncio_sleep(0.5)
        await Response(b"", status_code=204)(scope, receive, send)

    with serve(app, kind) as served, served.connect() as sock:
        sock.sendall(GET)
        time.sleep(0.2)
        served.server.should_exit = True
        sock.settimeout(5)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert b"HTTP/1.1 204 No Content" in out  # and then closed


def test_shutdown_during_idle(kind):
    with serve(HELLO, kind) as served, served.connect() as sock:
        time.sleep(0.2)
        served.server.should_exit = True
        sock.settimeout(5)
        assert sock.recv(65536) == b""


def test_100_continue_sent_when_body_consumed(kind):
    out, _ = run(echo_body, kind, EXPECT_POST)
    assert b"HTTP/1.1 100 Continue" in out and b"HTTP/1.1 200 OK" in out
    assert b'Body: {"hello": "world"}' in out


def test_100_continue_not_sent_when_body_not_consumed(kind):
    out, _ = run(Response(b"", status_code=204), kind, EXPECT_POST)
    assert b"HTTP/1.1 100 Continue" not in out and b"HTTP/1.1 204 No Content" in out


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c", b"not-websocket"])
def test_unsupported_upgrade_request_is_served_as_http(kind, upgrade):
    request = (b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: upgrade\r\nUpgrade: "
               + upgrade + b"\r\nSec-WebSocket-Version: 11\r\n\r\n")
    out, _ = run(HELLO, kind, request)
    assert b"HTTP/1.1 200 OK" in out and b"Hello, world" in out


def test_asgi_version(kind):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["asgi"])
        await HELLO(scope, receive, send)

    run(app, kind, GET)
    assert seen == [{"version": "3.0", "spec_version": "2.3"}]


@pytest.mark.parametrize("request_line", [b"G?T / HTTP/1.1", b"GET /?x=y z HTTP/1.1",
                                          b"GET / HTTP1.1"],
                         ids=["invalid-method", "invalid-path", "invalid-http-version"])
def test_invalid_http_request(kind, request_line):
    out, closed = run(HELLO, kind, request_line + b"\r\nHost: example.org\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request") and closed


def test_fragmentation(kind):
    request = b"GET /?param=qqqqqqqqqq HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    out, _ = run(HELLO, kind, request[:9], request[9:], pause=0.01)
    assert out.startswith(b"HTTP/1.1 200 OK")


HUGE_HEADERS = (b"GET / HTTP/1.1\r\nHost: example.org\r\nCookie: " + b"x" * 32 * 1024,
                b"x" * 32 * 1024 + b"\r\n\r\n")


def test_huge_headers(kind):
    out, _ = run(HELLO, kind, *HUGE_HEADERS)
    if kind == "modelmart":  # DIFFERS["huge_headers"]
        assert out.startswith(b"HTTP/1.1 431 ")
    else:
        assert b"HTTP/1.1 200 OK" in out and b"Hello, world" in out


def test_huge_headers_within_a_raised_limit():
    out, _ = run(HELLO, "modelmart", *HUGE_HEADERS, max_head=128 * 1024)
    assert b"HTTP/1.1 200 OK" in out and b"Hello, world" in out


def test_return_close_header(kind):
    out, closed = run(HELLO, kind, CLOSE_GET)
    assert b"HTTP/1.1 200 OK" in out and b"content-type: text/plain" in out
    assert b"content-length: 12" in out and b"connection: close" in out.lower() and closed


def test_close_connection_with_multiple_requests(kind):
    out, closed = run(HELLO, kind, CLOSE_GET + GET)
    assert out.count(b"HTTP/1.1 200 OK") == 1 and b"connection: close" in out.lower() and closed


def test_close_connection_with_post_request(kind):
    out, _ = run(echo_body, kind, CLOSE_POST)
    assert b"HTTP/1.1 200 OK" in out and b"Body: {'hello': 'world'}" in out


def test_iterator_headers(kind):
    async def app(scope, receive, send):
        headers = iter([(b"x-test-header", b"test value")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    out, _ = run(app, kind, GET)
    assert b"x-test-header: test value" in out


def test_lifespan_state(kind):
    expected = [{"a": 123, "b": [1]}, {"a": 123, "b": [1, 2]}]
    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"].update({"a": 123, "b": [1]})
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        seen.append({"a": scope["state"]["a"], "b": list(scope["state"]["b"])})
        scope["state"]["a"] = 456  # a key changed: not kept
        scope["state"]["b"].append(2)  # a value mutated: kept
        await Response("Hi!")(scope, receive, send)

    with serve(app, kind, lifespan=True) as served:
        for _ in range(2):
            out, _ = talk(served.port, GET)
            assert b"HTTP/1.1 200 OK" in out and b"Hi!" in out
    assert seen == expected


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
