"""Caps on what clients may hold, over raw sockets, with a health probe running throughout:
connections in all (the default cap follows RLIMIT_NOFILE) and per client address, idle
ones closed to make room; a head that never ends; what one connection may have parsed and
buffered ahead of the app."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import threading
import time

import pytest

from .probe import HealthProbe
from .serving import ServerProcess, closed_by_server, connect, recv_until_closed, serve


def open_idle(port: int, count: int) -> list[socket.socket]:
    """Up to ``count`` connections that never send a byte (non-blocking connects: a server
    that stopped accepting doesn't hold the test up), as many as this process may open."""
    socks = []
    for _ in range(count):
        try:
            sock = socket.socket()
        except OSError as exc:
            assert exc.errno in (errno.EMFILE, errno.ENFILE), exc
            break
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
        if len(socks) % 500 == 0:
            time.sleep(0.05)  # a burst at a time, as a crowd of clients would come
    return socks


@pytest.fixture
def nofile():
    """As many descriptors as this process may have (the hard limit), for the attack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_by_the_thousand_do_not_keep_new_clients_out(nofile):
    # The server runs with the common soft limit of 1,024 descriptors, and its default cap
    # (derived from it); the test opens as many idle connections as it may (21,000 or its
    # own limit), then holds them.
    count = min(21_000, nofile - 200)
    with ServerProcess(nofile=1024) as server, HealthProbe(server.port) as probe:
        socks = open_idle(server.port, count)
        try:
            time.sleep(3)
        finally:
            for sock in socks:
                sock.close()
    assert len(socks) >= 0.9 * count, f"only {len(socks)} of {count} connections were opened"
    probe.result.assert_healthy()


def test_one_client_address_holding_too_many_connections_loses_its_idle_ones():
    # The greedy client is 127.0.0.2; the probe (127.0.0.1) is another client.
    with ServerProcess(max_per_peer=64) as server, HealthProbe(server.port) as probe:
        socks = [socket.create_connection(("127.0.0.1", server.port),
                                          source_address=("127.0.0.2", 0)) for _ in range(300)]
        try:
            time.sleep(1)
            closed = sum(closed_by_server(sock, within=0.05) for sock in socks)
            # It can still connect: its own oldest idle connections make room.
            with socket.create_connection(("127.0.0.1", server.port),
                                          source_address=("127.0.0.2", 0)) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
                reply = recv_until_closed(sock, quiet=0.5)
        finally:
            for sock in socks:
                sock.close()
    assert closed >= 300 - 64 - 16, closed
    assert reply.startswith(b"HTTP/1.1 200"), reply
    probe.result.assert_healthy()


def test_a_new_connection_is_turned_away_when_every_one_is_busy():
    with ServerProcess(max_connections=4) as server:
        busy = [server.connect() for _ in range(4)]
        try:
            for sock in busy:
                sock.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nhost: x\r\n\r\n")
            time.sleep(0.5)
            with server.connect() as extra:
                extra.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
                refused = recv_until_closed(extra, quiet=1)
            answers = [recv_until_closed(sock, quiet=3) for sock in busy]
        finally:
            for sock in busy:
                sock.close()
    assert refused.startswith(b"HTTP/1.1 503 "), refused
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)


def test_a_head_that_never_ends_is_cut_off_at_the_size_limit():
    # A header value streamed without end, as fast as the server reads it, by 4 clients
    # twice over: cut off with a 431 after ~64 KiB, not gathered in memory.
    def flood(results: list) -> None:
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: ")
                sent = [0]
                sender = threading.Thread(target=_send_until_refused, args=(sock, sent))
                sender.start()
                reply = recv_until_closed(sock, quiet=5)
                sender.join(30)
                results.append((sent[0], reply))

    results: list = []
    with ServerProcess() as server, HealthProbe(server.port) as probe:
        clients = [threading.Thread(target=flood, args=(results,)) for _ in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
    assert len(results) == 8
    for sent, reply in results:
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:100]
        assert sent < 50_000_000  # refused long before the end
    probe.result.assert_healthy()


def _send_until_refused(sock: socket.socket, sent: list) -> None:
    try:
        while sent[0] < 200_000_000:
            sock.sendall(b"a" * 65536)
            sent[0] += 65536
    except OSError:
        pass


async def _slow(scope, receive, send):
    """Answers after 20 ms; reads the body only after 1 s (``/late-reader``)."""
    if scope["path"] == "/late-reader":
        await asyncio.sleep(1)
        while (await receive()).get("more_body"):
            pass
    await asyncio.sleep(0.02)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _sample(server, what, seconds: float) -> int:
    """The largest value of ``what(connection)`` over the server's connections, sampled
    every 5 ms for ``seconds``."""
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for conn in list(server.server.connections):
            try:
                most = max(most, what(conn))
            except (AttributeError, TypeError):
                pass
        time.sleep(0.005)
    return most


def test_pipelined_requests_are_parsed_only_a_little_ahead_of_the_app():
    with serve(_slow) as server, connect(server.port) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n" * 5_000)  # 150 KB, not read back
        most = _sample(server, lambda conn: len(conn.pipeline), seconds=2)
    assert 0 < most <= 200, most  # a 4 KiB slice's worth, not the whole 5,000


def test_a_body_is_not_read_from_the_socket_ahead_of_the_app_past_the_mark():
    with serve(_slow, body_high_water=100_000) as server, connect(server.port) as sock:
        sock.sendall(b"POST /late-reader HTTP/1.1\r\nhost: x\r\ncontent-length: 20000000\r\n\r\n")
        sender = threading.Thread(target=_send_quietly, args=(sock, b"z" * 20_000_000))
        sender.start()
        held = _sample(server, lambda conn: sum(map(len, conn.cycle.body)), seconds=0.8)
        reply = recv_until_closed(sock, quiet=5)
        sender.join(10)
    assert 0 < held <= 100_000 + 4096 * 2, held
    assert reply.startswith(b"HTTP/1.1 200")


def _send_quietly(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass
