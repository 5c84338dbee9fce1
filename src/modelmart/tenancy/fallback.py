"""Limits that survive a Redis outage: loud, never silent, never "no limits".

``FallbackCounters`` holds the replicas' shared counters (``RedisCounters``) and, while they
are unreachable, this replica's own counters in memory. The first command that fails to
reach Redis switches the replica over (a warning in the log, ``degraded`` set: the
``modelmart_limits_backend_degraded`` metric and ``/ready`` report it) and starts a probe
that pings Redis every ``PROBE_INTERVAL`` seconds; the first answer switches back (a warning
again). While degraded, a warning repeats every ``REMIND_EVERY`` seconds.

Per-replica limits: each replica admits its share of every limit, ⌈limit / replicas⌉, where
replicas is the count the heartbeat last saw (``redis_counters.py``), and of a budget what
the ledger says is left, divided the same way (``budgets.py``). Together the replicas stay
within a limit (up to one request per replica from the rounding) for what they admit while
degraded; what Redis counted before the outage is not seen by the replicas' own windows.

Which backend counted a request is kept with it (``Ticket.counters``,
``Reservation.counters``): a correction goes where the count is, and one for Redis while it
is down is dropped (the count stays conservative). Each switch moves ``epoch``: budgets seed
their counters again from the ledger (in memory, or in a Redis that may have restarted
empty). Each outage starts with empty memory counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .counters import Item, MemoryCounters, Verdict

log = logging.getLogger("modelmart.limits")

# What "Redis is unreachable" looks like (``RedisCounters`` raises redis-py's as these).
DOWN = (ConnectionError, TimeoutError, OSError)
PROBE_INTERVAL = 1.0
REMIND_EVERY = 60.0


class FallbackCounters:
    """The ``Counters`` interface over Redis, or over memory while Redis is down."""

    def __init__(self, primary, probe_interval: float = PROBE_INTERVAL) -> None:
        self.primary = primary
        self.local: MemoryCounters | None = None  # set while degraded
        self.epoch = 0  # moves at every switch
        self.share = 1  # replicas sharing the limits when Redis went away
        self.down_since: float | None = None
        self.last_error = ""
        self._probe_interval = probe_interval
        self._probe: asyncio.Task | None = None

    @property
    def degraded(self) -> bool:
        return self.local is not None

    @property
    def leases(self) -> bool:
        return getattr(self.primary, "leases", False)

    def backend(self):
        """Where counts go now."""
        return self.local if self.local is not None else self.primary

    async def start(self) -> None:
        """Check Redis once at startup: a replica that starts during an outage says so."""
        try:
            await self.primary.ping()
            await self.primary.beat()
        except DOWN as exc:
            self.fail(exc)
        self.primary.start()

    def fail(self, exc: BaseException) -> None:
        """Redis did not answer: switch this replica to its own counters (once per outage)."""
        if self.local is not None:
            return
        self.share = max(1, getattr(self.primary, "replicas", 1))
        self.local = MemoryCounters()
        self.epoch += 1
        self.down_since = time.monotonic()
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("limits backend unreachable (Redis: %s): rate limits and budgets fall "
                    "back to this replica's own counters, each limit divided by %d "
                    "replica(s), until Redis answers again", self.last_error, self.share)
        self._probe = asyncio.ensure_future(self._wait_for_primary())

    def share_of(self, limit: int) -> int:
        """This replica's part of a limit while degraded."""
        return -(-limit // self.share)

    async def _wait_for_primary(self) -> None:
        reminded = time.monotonic()
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self.primary.reconnect()
                await self.primary.ping()
                with contextlib.suppress(*DOWN):
                    await self.primary.beat()
            except DOWN as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if time.monotonic() - reminded >= REMIND_EVERY:
                    reminded = time.monotonic()
                    log.warning("limits backend still unreachable after %.0f s (Redis: %s); "
                                "per-replica limits in force", self.down_for(), self.last_error)
                continue
            break
        log.warning("limits backend reachable again after %.1f s: rate limits and budgets "
                    "are shared through Redis again", self.down_for())
        self.local = None
        self.epoch += 1
        self.down_since = None
        self._probe = None

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    # ---- the Counters interface: Redis, else memory --------------------------------------
    async def _run(self, op: str, *args):
        if self.local is None:
            try:
                return await getattr(self.primary, op)(*args)
            except DOWN as exc:
                self.fail(exc)
        return await getattr(self.local, op)(*args)

    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        return await self._run("try_add", key, amount, limit, ttl)

    async def add(self, key: str, amount: int, ttl: float) -> int:
        return await self._run("add", key, amount, ttl)

    async def get(self, key: str) -> int:
        return await self._run("get", key)

    async def seed(self, key: str, value: int, ttl: float) -> None:
        await self._run("seed", key, value, ttl)

    async def window_admit(self, items: list[Item], second: int) -> Verdict:
        return await self._run("window_admit", items, second)

    async def window_add(self, name: str, second: int, delta: int) -> None:
        await self._run("window_add", name, second, delta)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.primary.close()
