"""The open connections, and room for new ones: a cap on all of them and one per client
address. At a cap the oldest connections not answering a request (idle kept-alive ones,
new ones that sent nothing yet, slow heads) are closed to make room, a batch at a time, so a
new client — a health probe — is still served however many idle ones there are; only when
every connection is busy is a new one turned away (503)."""

from __future__ import annotations

import heapq
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection

_BATCH = 16  # at a cap, a sixteenth of it is freed at once: one scan makes room for many
_AGE = attrgetter("idle_since")


class Connections:
    def __init__(self, cap: int, per_peer: int) -> None:
        self.cap, self.per_peer = cap, per_peer
        self.open: set[Connection] = set()
        self.peers: dict[str, int] = {}  # client address -> connections open or coming
        self.pending = 0  # accepted, not yet a Connection

    def __len__(self) -> int:
        return len(self.open)

    def __iter__(self):
        return iter(list(self.open))

    def admit(self, peer: str) -> bool:
        """Room for a new connection from ``peer`` (making it if need be)? Counts it if so."""
        peers = self.peers
        count = peers.get(peer, 0)
        if self.per_peer and count >= self.per_peer:
            if not self.evict(peer, max(1, self.per_peer // _BATCH)):
                return False
            count = peers.get(peer, 0)
        if len(self.open) + self.pending >= self.cap and not self.evict(None, max(1, self.cap // _BATCH)):
            return False
        peers[peer] = count + 1
        self.pending += 1
        return True

    def add(self, conn: "Connection") -> None:
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
        ``peer``, or of anyone); returns how many."""
        idle = [c for c in self.open if c.evictable() and (peer is None or c.peer == peer)]
        oldest = heapq.nsmallest(count, idle, key=_AGE) if len(idle) > count else idle
        for conn in oldest:
            conn.evict()
        return len(oldest)
