"""The listening socket. Every connection waiting is accepted when it becomes readable (the
event loop's own servers, uvloop's included, accept one per loop iteration, and under load
an iteration is long: 256 clients connecting at once waited seconds in the listen queue),
each admitted by ``capacity.Connections`` or turned away with a 503. Out of file
descriptors, it closes idle connections and pauses accepting briefly rather than spin."""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING

from .capacity import AT_CAP, REFUSED
from .connection import Connection
from .wire import BUSY

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("modelmart.server")

_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Listener:
    def __init__(self, server: "Server", sock: socket.socket | None = None) -> None:
        self.server, self.loop = server, server.loop
        if sock is None:
            family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
            sock = socket.create_server((server.host, server.port), family=family,
                                        backlog=server.backlog,
                                        reuse_port=bool(server.reuse_port))
        self.sock = sock
        self.tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        connections = self.server.connections
        for _ in range(connections.accept_batch):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                freed = connections.evict(None, max(1, connections.cap // 16)) \
                    if exc.errno in _OUT_OF_FDS else 0
                log.error("accepting a connection failed: %s; %d idle connections closed, "
                          "pausing", exc, freed)
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(0.05 if freed else 0.5, self._resume)
                return
            peer = address[0] if isinstance(address, tuple) else ""
            verdict = connections.admit(peer)
            if verdict == REFUSED:
                _turn_away(conn)
                continue
            conn.setblocking(False)
            if self.tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.loop.create_task(self._adopt(conn, peer))
            if verdict == AT_CAP:
                return  # the rest wait in the listen queue until there is room

    def _resume(self) -> None:
        if self.sock.fileno() != -1:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _adopt(self, conn: socket.socket, peer: str) -> None:
        connections = self.server.connections
        try:
            await self.loop.connect_accepted_socket(lambda: Connection(self.server, peer),
                                                    sock=conn)
        except OSError:
            conn.close()
            connections.not_adopted(peer)
        else:
            connections.adopted()

    def close(self) -> None:
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def _turn_away(conn: socket.socket) -> None:
    """A 503, and close; a request already there is read first, so the close is no reset
    that could overtake the 503."""
    try:
        conn.send(BUSY)
        conn.recv(65536, socket.MSG_DONTWAIT)
    except OSError:
        pass
    conn.close()
