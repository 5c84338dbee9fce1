"""The open connections, and room for new ones: a cap on all of them and one per client
address. At a cap the oldest connections not answering a request (idle kept-alive ones,
new ones that sent nothing yet, slow heads) are closed to make room, a batch at a time, so a
new client — a health probe — is still served however many idle ones there are; only when
every connection is busy is a new one turned away (503)."""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .connection import Connection

REFUSED, ADMITTED, AT_CAP = range(3)
_BATCH = 16  # at a cap, a sixteenth of it is freed at once: one scan makes room for many
_YOUNG = 0.1  # seconds (a tick of the server's clock) a new, silent connection is young


class Connections:
    def __init__(self, cap: int, per_peer: int, now: Callable[[], float]) -> None:
        self.cap, self.per_peer, self.now = cap, per_peer, now
        self.open: set[Connection] = set()
        self.peers: dict[str, int] = {}  # client address -> connections open or coming
        self.pending = 0  # accepted, not yet a Connection
        # Connections taken from the listen queue per readiness, at most; fewer under a
        # small cap: a client accepted must have its request read before newcomers push it
        # out as the oldest idle connection.
        self.accept_batch = max(8, min(512, cap // 8, (per_peer or cap) // 8))
        self.serials = itertools.count()

    def __len__(self) -> int:
        return len(self.open)

    def __iter__(self):
        return iter(list(self.open))

    def admit(self, peer: str) -> int:
        """Room for a new connection from ``peer``, made if need be? REFUSED if every
        connection is busy; AT_CAP if it is taken over the cap because those that could
        make room are still being set up (accept no more for now); else ADMITTED."""
        peers = self.peers
        count = peers.get(peer, 0)
        verdict = ADMITTED
        if self.per_peer and count >= self.per_peer:
            if not self.evict(peer, max(1, self.per_peer // _BATCH)):
                if not self.pending:
                    return REFUSED
                verdict = AT_CAP
            count = peers.get(peer, 0)
        if len(self.open) + self.pending >= self.cap:
            if not self.evict(None, max(1, self.cap // _BATCH)):
                if not self.pending:
                    return REFUSED
                verdict = AT_CAP
        peers[peer] = count + 1
        self.pending += 1
        return verdict

    def add(self, conn: "Connection") -> None:
        conn.serial = next(self.serials)
        self.open.add(conn)

    def adopted(self) -> None:
        self.pending -= 1

    def not_adopted(self, peer: str) -> None:
        self.pending -= 1
        self._release(peer)

    def forget(self, conn: "Connection") -> None:
        self.open.discard(conn)
        if conn.peer is not None:  # None: not admitted through the listener, not counted
            self._release(conn.peer)

    def _release(self, peer: str) -> None:
        count = self.peers.get(peer, 0) - 1
        if count > 0:
            self.peers[peer] = count
        else:
            self.peers.pop(peer, None)

    def evict(self, peer: str | None, count: int) -> int:
        """Close up to ``count`` of the longest-idle connections not answering a request (of
        ``peer``, or of anyone); returns how many. New ones that haven't had their first
        read yet go last: a client sends its request right after connecting, and an idle
        flood must not push it out before it is read."""
        idle = [c for c in self.open if c.evictable() and (peer is None or c.peer == peer)]
        if len(idle) > count:
            recent = self.now() - _YOUNG

            def age(conn: "Connection") -> tuple:
                return (conn.fresh and conn.idle_since >= recent, conn.idle_since, conn.serial)

            idle = heapq.nsmallest(count, idle, key=age)
        for conn in idle:
            conn.evict()
        return len(idle)
