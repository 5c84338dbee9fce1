"""What goes on the wire, over raw sockets: a chunked body's trailer never becomes a request
header; an app's response headers are checked before they are written; HEAD gets GET's
framing; HTTP/1.0 clients never get chunked; the access log shows the request target as
received, made safe; an early reply is followed by a clean close."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from .asgi import app
from .serving import connect, exchange, recv_until_closed, responses, serve


@pytest.fixture(scope="module")
def server():
    with serve(app, access_log=True) as served:
        yield served


def test_a_chunked_trailer_never_becomes_a_request_header(server):
    data = exchange(server.port, b"POST /headers HTTP/1.1\r\nhost: x\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n0\r\nauthorization: Bearer sk-smuggled\r\n"
                                 b"x-api-key: sk-smuggled\r\n\r\n")
    (head, body), = responses(data)
    assert head.startswith(b"HTTP/1.1 200")
    names = [name for name, _ in json.loads(body)]
    assert "authorization" not in names and "x-api-key" not in names
    assert names == ["host", "transfer-encoding"]


@pytest.mark.parametrize("kind", ["crlf", "lf", "nul", "name-space", "name-colon", "name-empty"])
def test_a_response_header_that_cannot_go_on_the_wire_is_a_500(server, kind, caplog):
    data = exchange(server.port, b"GET /bad-header?kind=%s HTTP/1.1\r\nhost: x\r\n\r\n"
                                 % kind.encode())
    assert data.startswith(b"HTTP/1.1 500 "), data
    assert b"smuggled" not in data and b"should not be sent" not in data
    assert b"x-b" not in data and b"x a" not in data
    assert "the app failed on GET /bad-header" in caplog.text


def test_head_gets_the_content_length_get_would_have(server):
    get = exchange(server.port, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    head = exchange(server.port, b"HEAD /health HTTP/1.1\r\nhost: x\r\n\r\n")
    assert b"content-length: 2\r\n" in get and get.endswith(b"\r\n\r\nok")
    assert head == get[:-2]  # the same head, no body


def test_head_of_a_streamed_reply_is_chunked_with_no_body_and_keeps_the_connection(server):
    with connect(server.port) as sock:
        sock.sendall(b"HEAD /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        first = recv_until_closed(sock, quiet=0.5)
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        second = recv_until_closed(sock, quiet=0.5)
    assert first.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in first
    assert first.endswith(b"\r\n\r\n")  # no chunk, not even the last one
    assert second.startswith(b"HTTP/1.1 200") and second.endswith(b"ok")


def test_an_http10_client_gets_a_streamed_reply_close_delimited(server):
    data = exchange(server.port, b"GET /stream HTTP/1.0\r\n\r\n", quiet=2)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head
    assert b"connection: close" in head and body == b"part0;part1;part2;"


def test_an_http10_client_that_asks_keeps_its_connection_when_the_length_is_known(server):
    with connect(server.port) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            data = recv_until_closed(sock, quiet=0.5)
            assert data.startswith(b"HTTP/1.1 200") and b"connection: keep-alive" in data
            assert data.endswith(b"ok")
        sock.sendall(b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        data = recv_until_closed(sock, quiet=2)  # ends with the server's close
    assert b"connection: close" in data and data.endswith(b"part2;")


def test_an_http10_client_that_does_not_ask_is_closed_after_the_reply(server):
    data = exchange(server.port, b"GET /health HTTP/1.0\r\n\r\n", quiet=2)
    assert b"connection: close" in data and data.endswith(b"ok")


def test_the_access_log_shows_the_target_as_received_and_cannot_be_forged(server, caplog):
    caplog.set_level(logging.INFO, logger="modelmart.access")
    exchange(server.port, b'GET /a%0d%0a127.0.0.1%20-%20"GET%20/admin"%20200/"q\\?x=%0A HTTP/1.1'
                          b"\r\nhost: x\r\n\r\n")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "modelmart.access"]
    assert "\r" not in line and "\n" not in line
    assert 'GET /a%0d%0a127.0.0.1%20-%20\\x22GET%20/admin\\x22%20200/\\x22q\\x5c?x=%0A HTTP/1.1' \
        in line


def test_a_reply_sent_before_the_body_was_read_ends_the_connection_cleanly(server):
    # The app answers 401 from the headers alone; the client is still sending its body.
    with connect(server.port, timeout=10) as sock:
        sock.sendall(b"POST /auth HTTP/1.1\r\nhost: x\r\ncontent-length: 50000000\r\n\r\n")
        sender = threading.Thread(target=_send_quietly, args=(sock, b"z" * 5_000_000))
        sender.start()
        data = recv_until_closed(sock, quiet=5)  # EOF after the reply, not a reset
        sender.join(10)
    (head, body), = responses(data)
    assert head.startswith(b"HTTP/1.1 401 ") and body == b"no key"
    assert b"connection: close" in head


def _send_quietly(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server stopped reading: expected


def test_an_upgrade_request_with_a_body_is_refused_after_the_request_before_it(server):
    data = exchange(server.port, b"GET /stream?parts=3&delay=0.1 HTTP/1.1\r\nhost: x\r\n\r\n"
                                 b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\n"
                                 b"upgrade: h2c\r\ncontent-length: 5\r\n\r\nGET /", quiet=1.5)
    first, refused = responses(data)
    assert first[0].startswith(b"HTTP/1.1 200") and first[1] == b"part0;part1;part2;"
    assert refused[0].startswith(b"HTTP/1.1 400 ")


def test_a_large_body_of_declared_length_is_parsed_in_one_go_and_nothing_ahead(server,
                                                                                 monkeypatch):
    # A 300 KB body with a pipelined request behind it, sent in one write: the body is
    # parsed in a slice that ends where it ends (not in 4 KiB slices: 75 parser calls cost
    # a 200 KB prompt 63 µs of CPU), and the request behind it is still answered after.
    from modelmart.server import parsing

    calls = []
    original = parsing.RequestParser._parse

    def counting(self, chunk, body=False):
        calls.append((len(chunk), body))
        return original(self, chunk, body)

    monkeypatch.setattr(parsing.RequestParser, "_parse", counting)
    payload = b"x" * 300_000
    data = exchange(server.port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n"
                    % len(payload) + payload + b"GET /health HTTP/1.1\r\nhost: x\r\n"
                    b"connection: close\r\n\r\n", quiet=1.0)
    (head1, body1), (head2, _) = responses(data)
    assert head1.startswith(b"HTTP/1.1 200") and body1 == str(len(payload)).encode()
    assert head2.startswith(b"HTTP/1.1 200")
    # however the kernel split the bytes: a few body slices, never 4 KiB ones
    body_slices = [n for n, body in calls if body]
    assert sum(body_slices) + sum(n for n, body in calls if not body) >= len(payload)
    assert len(calls) <= 2 * 40 and all(n > parsing.SLICE for n in body_slices)
    assert sum(body_slices) > len(payload) // 2
