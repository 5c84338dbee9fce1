"""The server's bounds, in one place: how long a client may take, how much one connection
may hold, how many connections there may be. Generous defaults: a well-behaved client never
meets them; a slow or greedy one is cut off before it costs other clients anything."""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    # A request head (request line and headers) must be complete within this many seconds
    # of its first byte, and a new connection must send its first byte within it: else 408
    # (or, if nothing was sent, a silent close). Slowloris.
    header_timeout: float = 10.0
    # While the app waits for the request body, a body that makes no progress for this long
    # ends the request: 408 if no response was started, and the connection is closed.
    body_timeout: float = 30.0
    # An idle kept-alive connection is closed after this many seconds (nginx's default).
    keepalive: float = 75.0
    # A client that takes none of a reply for this long (the server waiting for its socket
    # buffer to drain) is dropped.
    send_timeout: float = 60.0
    # Bytes of request line and headers (431 beyond), and of a chunked body's trailer.
    max_head: int = 64 * 1024
    # Request body received but not yet taken by the app: past this the socket is not read
    # until the app asks for more.
    body_high_water: int = 1 << 20
    # Open connections at most; None: half the file descriptors the process may open
    # (RLIMIT_NOFILE), the other half left for upstream sockets and files. At the cap the
    # oldest idle connections are closed to make room; if none is idle, a new one gets 503.
    max_connections: int | None = None
    # Open connections from one client address at most (0: no cap); past it the address's
    # own oldest idle connections make room. High enough for a benchmark from one host.
    max_per_peer: int = 2048
    # After a reply sent before the request body was read (or a 4xx of the server's own),
    # the connection is half-closed and what the client still sends is read and dropped
    # (up to body_high_water bytes) for this long, so the client reads the reply instead
    # of a reset.
    linger: float = 2.0

    def connection_cap(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        return default_max_connections()


def default_max_connections() -> int:
    """Half of what RLIMIT_NOFILE leaves after a reserve for the process's own files: a
    request in flight holds an upstream socket too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - 64) // 2)


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (what Go's runtime does at start): the
    soft default of 1,024 is far below what a server of many idle connections needs. Returns
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
