"""Order on the wire: what the server says on its own (``100 Continue``, a 400) never lands
in the middle of another response, ``100 Continue`` only when the app asks for the body,
and pipelined requests are answered in order without starving other clients."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from .probe import HealthProbe
from .serving import ServerProcess, recv_until_closed, responses

STREAM = b"GET /stream?parts=5&delay=0.1 HTTP/1.1\r\nhost: x\r\n\r\n"


@pytest.fixture(scope="module")
def server():
    with ServerProcess() as served:
        yield served


def read_until(sock: socket.socket, marker: bytes, seconds: float) -> bytes:
    sock.settimeout(seconds)
    out = b""
    deadline = time.monotonic() + seconds
    while marker not in out and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_100_continue_is_not_sent_to_a_request_answered_from_its_headers(server):
    with server.connect() as sock:
        sock.sendall(b"POST /auth HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n"
                     b"expect: 100-continue\r\n\r\n")
        reply = recv_until_closed(sock, quiet=1)
    assert reply.startswith(b"HTTP/1.1 401 "), reply
    assert b"100 Continue" not in reply


def test_100_continue_is_sent_when_the_app_asks_for_the_body(server):
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
                     b"expect: 100-continue\r\n\r\n")
        assert read_until(sock, b"\r\n\r\n", 3) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        (head, body), = responses(recv_until_closed(sock, quiet=0.5))
    assert head.startswith(b"HTTP/1.1 200") and body == b"4"


def test_100_continue_never_lands_in_a_previous_pipelined_response(server):
    with server.connect() as sock:
        sock.sendall(STREAM + b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
                              b"expect: 100-continue\r\n\r\n")
        before_body = read_until(sock, b"100 Continue\r\n\r\n", 5)
        sock.sendall(b"body")
        data = before_body + recv_until_closed(sock, quiet=0.5)
    first, interim, second = responses(data)
    assert first[1] == b"part0;part1;part2;part3;part4;"
    assert interim[0] == b"HTTP/1.1 100 Continue"
    assert second[0].startswith(b"HTTP/1.1 200") and second[1] == b"4"


def test_a_malformed_pipelined_request_is_answered_after_the_previous_response(server):
    with server.connect() as sock:
        sock.sendall(STREAM + b"NOT HTTP AT ALL\r\n\r\n")
        data = recv_until_closed(sock, quiet=1.5)
    first, rejected = responses(data)
    assert first[0].startswith(b"HTTP/1.1 200") and first[1] == b"part0;part1;part2;part3;part4;"
    assert rejected[0].startswith(b"HTTP/1.1 400 ") and b"connection: close" in rejected[0]


def test_pipelined_requests_are_answered_in_order(server):
    requests = b"".join(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                        % (i, b"z" * i) for i in range(1, 50))
    with server.connect() as sock:
        sock.sendall(requests)
        data = recv_until_closed(sock, quiet=0.5)
    assert [body for _, body in responses(data)] == [b"%d" % i for i in range(1, 50)]


def _flood(port: int, count: int, done: list) -> None:
    """Pipeline ``count`` GETs on one connection (while reading the answers), and count the
    answers."""
    request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sender = threading.Thread(target=sock.sendall, args=(request * count,))
        sender.start()
        seen, tail = 0, b""
        sock.settimeout(30)
        while seen < count:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data = tail + chunk
            seen += data.count(b"HTTP/1.1 200 OK")
            tail = data[-14:]  # part of a status line, never a whole one
        sender.join()
        done.append(seen)


def test_pipelining_floods_do_not_starve_other_clients(server):
    done: list[int] = []
    with HealthProbe(server.port, mode="keepalive") as probe:
        clients = [threading.Thread(target=_flood, args=(server.port, 20_000, done))
                   for _ in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(120)
    assert done == [20_000] * 4
    probe.result.assert_healthy()
