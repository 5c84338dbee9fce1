"""``modelmart.server``: the HTTP/1.1 server, driven over raw sockets and with the official
clients, against small ASGI apps that show each behaviour."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from modelmart.server import Limits, Server
from tests.fakes.script import free_port


class Recorder:
    """An ASGI app whose behaviour each test picks by path; it records what it saw."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.disconnected = threading.Event()
        self.slow_done = threading.Event()
        self.lifespan: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append({"path": path, "raw_path": scope["raw_path"], "body": body,
                          "query": scope["query_string"], "method": scope["method"],
                          "headers": dict(scope["headers"])})
        if path == "/boom":
            raise RuntimeError("the app failed")
        if path == "/silent":
            return
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if path == "/wait-for-disconnect":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            if (await receive())["type"] == "http.disconnect":
                self.disconnected.set()
            return
        if path == "/slow":
            await asyncio.sleep(0.5)
            self.slow_done.set()
        reply = b"%s %d" % (path.encode(), len(body))
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain"), (b"x-app", b"yes")]})
        await send({"type": "http.response.body", "body": reply})


@pytest.fixture
def served():
    app = Recorder()
    server = Server(app, "127.0.0.1", free_port(), limits=Limits(keepalive=1.0), grace=3.0)
    thread = threading.Thread(target=server.run, args=(False,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    yield app, server
    server.should_exit = True
    thread.join(10)


def raw(server, data: bytes, *, wait: float = 0.5) -> bytes:
    """Send bytes, read until the server closes or goes quiet for ``wait`` seconds."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(data)
        sock.settimeout(wait)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def test_a_reply_in_one_message_gets_a_content_length(served):
    app, server = served
    resp = httpx.post(f"http://127.0.0.1:{server.port}/hello?x=1", content=b"abc")
    assert resp.status_code == 201 and resp.text == "/hello 3"
    assert resp.headers["content-length"] == "8" and "transfer-encoding" not in resp.headers
    assert resp.headers["x-app"] == "yes"
    assert app.seen[0]["query"] == b"x=1" and app.seen[0]["method"] == "POST"


def test_a_streamed_reply_is_chunked(served):
    _, server = served
    with httpx.stream("GET", f"http://127.0.0.1:{server.port}/stream") as resp:
        assert resp.headers["transfer-encoding"] == "chunked"
        assert b"".join(resp.iter_raw()) == b"part0;part1;part2;"


def test_keep_alive_and_pipelining_answer_in_order(served):
    app, server = served
    requests = b"".join(b"POST /p%d HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                        % (i, i, b"z" * i) for i in range(1, 4))
    out = raw(server, requests)
    assert out.count(b"HTTP/1.1 201 Created") == 3
    assert out.index(b"/p1 1") < out.index(b"/p2 2") < out.index(b"/p3 3")
    assert [s["path"] for s in app.seen] == ["/p1", "/p2", "/p3"]


def test_percent_encoded_paths_keep_their_raw_form(served):
    app, server = served
    raw(server, b"GET /model/a%3Ab%2Fc/converse HTTP/1.1\r\nhost: x\r\n\r\n")
    assert app.seen[0]["path"] == "/model/a:b/c/converse"
    assert app.seen[0]["raw_path"] == b"/model/a%3Ab%2Fc/converse"


def test_expect_100_continue(served):
    _, server = served
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
                     b"expect: 100-continue\r\n\r\n")
        sock.settimeout(2)
        assert sock.recv(1000).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"body")
        assert b"/big 4" in sock.recv(1000)


def test_a_large_body_arrives_whole(served):
    app, server = served
    body = bytes(range(256)) * 12_000  # 3 MB: past the read high-water mark
    resp = httpx.post(f"http://127.0.0.1:{server.port}/upload", content=body, timeout=10)
    assert resp.text == f"/upload {len(body)}" and app.seen[0]["body"] == body


def test_chunked_request_bodies(served):
    app, server = served
    out = raw(server, b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert b"/c 5" in out and app.seen[0]["body"] == b"abcde"


def test_malformed_requests_get_a_400_and_a_close(served):
    _, server = served
    out = raw(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"connection: close" in out


def test_oversized_headers_get_a_431(served):
    _, server = served
    out = raw(server, b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_head_replies_carry_no_body_but_the_length_get_would_have(served):
    _, server = served
    out = raw(server, b"HEAD /h HTTP/1.1\r\nhost: x\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    # The app's body would be b"/h 0": four bytes, none of them sent.
    assert head.startswith(b"HTTP/1.1 201") and b"content-length: 4" in head and rest == b""


def test_an_app_error_is_a_500_and_the_server_lives_on(served):
    _, server = served
    assert httpx.get(f"http://127.0.0.1:{server.port}/boom").status_code == 500
    assert httpx.get(f"http://127.0.0.1:{server.port}/silent").status_code == 500
    assert httpx.get(f"http://127.0.0.1:{server.port}/ok").status_code == 201


def test_a_client_that_leaves_is_an_http_disconnect(served):
    app, server = served
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /wait-for-disconnect HTTP/1.1\r\nhost: x\r\n\r\n")
        sock.settimeout(2)
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
    assert app.disconnected.wait(2)


def test_idle_connections_are_closed_after_the_keepalive(served):
    _, server = served
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(1000).startswith(b"HTTP/1.1 201")
        started = time.monotonic()
        assert sock.recv(1000) == b""  # closed by the server
        assert time.monotonic() - started < 4


def test_shutdown_lets_requests_in_flight_finish():
    app = Recorder()
    server = Server(app, "127.0.0.1", free_port(), grace=3.0)
    thread = threading.Thread(target=server.run, args=(False,), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    result = {}
    client = threading.Thread(target=lambda: result.update(
        r=httpx.get(f"http://127.0.0.1:{server.port}/slow", timeout=5)))
    client.start()
    time.sleep(0.2)
    server.should_exit = True
    client.join(5)
    thread.join(5)
    assert result["r"].status_code == 201 and app.slow_done.is_set()
    assert app.lifespan == ["lifespan.startup", "lifespan.shutdown"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)


async def test_every_waiting_connection_is_accepted_at_once():
    # Event loops' own servers accept one connection per loop iteration; under load an
    # iteration is long, and clients connecting together waited seconds. The listener takes
    # all of them when its socket is readable.
    from modelmart.server.listener import Listener

    server = Server(Recorder(), "127.0.0.1", 0)
    server.loop = asyncio.get_running_loop()
    listener = Listener(server)
    server.loop.remove_reader(listener.sock.fileno())  # one accept call, by hand
    port = listener.sock.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    try:
        listener._accept()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert len(server.connections) == 50
    finally:
        for c in clients:
            c.close()
        for conn in server.connections:
            conn.evict()
        listener.close()


def test_a_request_leaves_no_garbage_for_the_cycle_collector():
    # Every request of the server before was a reference cycle (its scope held a method of
    # its cycle), freed only by the cyclic garbage collector, whose full passes then stalled
    # the event loop for 50-100 ms under a pipelining flood. Refcounting frees them now.
    import gc

    from .asgi import app
    from .serving import serve

    with serve(app) as served, served.connect() as sock:
        gc.collect()
        gc.disable()
        try:
            for path in (b"/health", b"/echo", b"/stream"):
                for _ in range(50):
                    sock.sendall(b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nab"
                                 % path)
                    reply = b""
                    while not (reply.endswith(b"0\r\n\r\n") or reply.endswith(b"\r\n\r\nok")
                               or reply.endswith(b"\r\n\r\n2")):
                        reply += sock.recv(65536)
            time.sleep(0.2)
            assert gc.collect() == 0
        finally:
            gc.enable()
