"""Timeouts against slow clients, over raw sockets, with a health probe running throughout:
a head must be complete within the header timeout (slowloris), a new connection must say
something within it, a body must keep arriving while the app waits for it; idle kept-alive
connections have their own, longer timeout."""

from __future__ import annotations

import select
import socket
import time

import pytest

from .probe import HealthProbe
from .serving import ServerProcess, closed_by_server, recv_until_closed


@pytest.fixture(scope="module")
def server():
    with ServerProcess(header_timeout=1.0, body_timeout=1.0, keepalive=5.0) as served:
        yield served


def drip(socks: list[socket.socket], piece: bytes, seconds: float) -> dict[int, bytes]:
    """Send ``piece`` on every socket every 0.2 s for ``seconds``, collecting what each gets
    back; a socket that got anything (or was closed) gets no more."""
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(got) < len(socks):
        readable, _, _ = select.select([s for i, s in enumerate(socks) if i not in got], [], [], 0.2)
        for sock in readable:
            try:
                got[socks.index(sock)] = recv_until_closed(sock, quiet=0.3)
            except OSError as exc:
                got[socks.index(sock)] = repr(exc).encode()
        for i, sock in enumerate(socks):
            if i not in got:
                try:
                    sock.sendall(piece)
                except OSError as exc:
                    got[i] = repr(exc).encode()
    return got


def test_a_head_that_never_ends_gets_a_408_and_a_close(server):
    with HealthProbe(server.port) as probe:
        socks = [server.connect() for _ in range(100)]
        try:
            for sock in socks:
                sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")
            got = drip(socks, b"x-drip: 1\r\n", seconds=6)  # a header line every 0.2 s
        finally:
            for sock in socks:
                sock.close()
    assert len(got) == len(socks), f"{len(socks) - len(got)} slow heads were never cut off"
    assert all(reply.startswith(b"HTTP/1.1 408 ") and b"connection: close" in reply
               for reply in got.values()), set(got.values())
    probe.result.assert_healthy()


def test_a_new_connection_that_says_nothing_is_closed(server):
    with HealthProbe(server.port) as probe:
        socks = [server.connect() for _ in range(100)]
        started = time.monotonic()
        try:
            # Within 3 s: the header timeout (1 s), well before the keep-alive one (5 s).
            closed = [closed_by_server(sock, within=max(0.1, 3 - (time.monotonic() - started)))
                      for sock in socks]
        finally:
            for sock in socks:
                sock.close()
    assert all(closed), f"{closed.count(False)} silent connections were left open"
    probe.result.assert_healthy()


def test_a_body_that_stops_arriving_gets_a_408_and_a_close(server):
    with HealthProbe(server.port) as probe:
        socks = [server.connect() for _ in range(50)]
        try:
            for sock in socks:
                sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n"
                             + b"z" * 10)
            got = drip(socks, b"", seconds=6)  # nothing more: the app waits for the body
        finally:
            for sock in socks:
                sock.close()
    assert len(got) == len(socks), f"{len(socks) - len(got)} stalled bodies were never cut off"
    assert all(reply.startswith(b"HTTP/1.1 408 ") for reply in got.values()), set(got.values())
    probe.result.assert_healthy()


def test_a_body_that_keeps_arriving_slowly_is_not_cut_off(server):
    # One byte every 0.5 s for 3 s: slower than the whole body timeout, but never stalled.
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\n\r\n")
        for _ in range(6):
            time.sleep(0.5)
            sock.sendall(b"z")
        assert recv_until_closed(sock, quiet=1).startswith(b"HTTP/1.1 200 OK")


def test_an_idle_kept_alive_connection_has_the_keepalive_timeout_not_the_header_one(server):
    with server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert recv_until_closed(sock, quiet=0.5).startswith(b"HTTP/1.1 200")
        time.sleep(2.5)  # past the header timeout, within the keep-alive one
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert recv_until_closed(sock, quiet=0.5).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, within=8)  # then the keep-alive timeout (5 s)
