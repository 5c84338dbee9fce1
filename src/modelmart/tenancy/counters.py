"""The atomic counter primitives under rate limits and budgets, with interchangeable backends.

Every backend offers the same coroutines. Plain counters, for budgets:

- ``try_add(key, amount, limit, ttl) -> (admitted, value)``: atomically, if the current value
  plus ``amount`` is at most ``limit``, add it and return ``(True, new)``; otherwise change
  nothing and return ``(False, current)``.
- ``add(key, amount, ttl) -> new``: unconditional, may be negative (settling a reservation).
- ``get(key) -> value`` (0 when absent).
- ``seed(key, value, ttl)``: set only if absent (a budget counter seeded from the ledger).

A write (an admitted ``try_add``, an ``add``, a ``seed`` that sets) restarts the key's
time-to-live, so a counter expires only after ``ttl`` seconds without writes. Values are
exact integers; the Redis and coordinator backends hold them as signed 64-bit integers.

Windows, for rate limits (see ``limits.py`` for the promise they keep): a window is a limit's
one-second buckets of the last ``BUCKETS`` seconds, ``second - 60 … second``, with their total.

- ``window_admit([(name, amount, limit), ...], second) -> Verdict``: all or nothing, admit
  the items if each window's total plus its amount is at most its limit, counting each
  amount in bucket ``at``, where ``at`` is ``second`` or, if one of the windows has already
  seen a newer second (a request that read the clock earlier but arrived later, or another
  replica's clock), that newest second: seconds never go back in a window, which is what the
  promise needs. Buckets that left the window are dropped on the way (amortized O(1)).
- ``window_add(name, second, delta)``: correct bucket ``second`` (a token estimate settled,
  a request given back, a lease's unused units); dropped if the bucket left the window.

A ``Verdict`` is ``[admitted, at, totals, clear_at, fits_at]``: the windows' totals after
(or, refused, without) the request; per window the second from which it holds nothing that
is counted now (0 if empty): 61 seconds after its newest bucket with a positive count; the
second from which the request would fit if nothing else arrived (``at`` when admitted, -1
if it never can: an amount over its limit). The coordinator also offers ``window_lease``.

Backends: ``MemoryCounters`` (one process), ``RedisCounters`` (replicas sharing Redis) and
``CoordinatorCounters`` (workers on one machine sharing the supervisor's coordinator, see
``coordinator.py``). ``make_counters`` picks one from the settings.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

SWEEP_INTERVAL = 30.0  # seconds between purges of expired keys from a CounterTable
BUCKETS = 61  # a window at second s counts the buckets of seconds s - 60 … s
# Redis: a limit's hash expires this long after its last write (it holds nothing by then).
WINDOW_TTL_MS = (BUCKETS + 4) * 1000

Item = tuple[str, int, int]  # (name, amount, limit) for window_admit
Verdict = list  # [admitted, at, totals, clear_at, fits_at]: see the module's docstring


class Counters(Protocol):
    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]: ...
    async def add(self, key: str, amount: int, ttl: float) -> int: ...
    async def get(self, key: str) -> int: ...
    async def seed(self, key: str, value: int, ttl: float) -> None: ...
    async def window_admit(self, items: list[Item], second: int) -> Verdict: ...
    async def window_add(self, name: str, second: int, delta: int) -> None: ...
    async def close(self) -> None: ...


class _Window:
    """One limit's buckets: ``ring[s % BUCKETS]`` holds second ``s`` for ``head - 60 … head``."""

    __slots__ = ("head", "total", "last", "ring")

    def __init__(self, head: int) -> None:
        self.head, self.total = head, 0
        self.last = -1  # the newest second counted a positive amount
        self.ring = [0] * BUCKETS

    def advance(self, second: int) -> None:
        """Move to ``second``: the buckets that leave the window are dropped."""
        if second - self.head >= BUCKETS:
            self.ring = [0] * BUCKETS
            self.total = 0
        else:
            ring = self.ring
            for s in range(self.head + 1, second + 1):
                i = s % BUCKETS
                self.total -= ring[i]
                ring[i] = 0
        self.head = second

    def charge(self, amount: int) -> None:
        self.ring[self.head % BUCKETS] += amount
        self.total += amount
        if amount > 0:
            self.last = self.head

    def clear_at(self) -> int:
        return self.last + BUCKETS if self.total > 0 else 0

    def fits_at(self, amount: int, limit: int) -> int:
        """The first second from which ``amount`` fits, if nothing else arrives."""
        if amount > limit:
            return -1
        excess = self.total + amount - limit
        if excess <= 0:
            return self.head
        ring = self.ring
        for s in range(self.head - BUCKETS + 1, self.head + 1):  # the oldest leaves first
            excess -= ring[s % BUCKETS]
            if excess <= 0:
                return s + BUCKETS
        return self.head + BUCKETS  # only with negative buckets: all of them gone


class CounterTable:
    """The synchronous core: a dict of (value, expires_at) and one of windows. The
    coordinator serves one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._clock = clock
        self._next_sweep = clock() + SWEEP_INTERVAL
        self._windows: dict[str, _Window] = {}
        self._windows_swept_at = 1024  # sweep idle windows when there are this many

    def get(self, key: str) -> int:
        entry = self._live(key)
        return 0 if entry is None else entry[0]

    def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        current = self.get(key)
        if current + amount > limit:
            return False, current
        self._set(key, current + amount, ttl)
        return True, current + amount

    def add(self, key: str, amount: int, ttl: float) -> int:
        value = self.get(key) + amount
        self._set(key, value, ttl)
        return value

    def seed(self, key: str, value: int, ttl: float) -> None:
        if self._live(key) is None:
            self._set(key, value, ttl)

    def __len__(self) -> int:
        return len(self._values) + len(self._windows)

    def window_admit(self, items: list[Item], second: int) -> Verdict:
        if len(items) == 1:  # the usual request: one limit
            name, amount, limit = items[0]
            w = self._window(name, second)
            if w.total + amount > limit:
                return [False, w.head, [w.total], [w.clear_at()], w.fits_at(amount, limit)]
            w.charge(amount)
            return [True, w.head, [w.total], [w.clear_at()], w.head]
        windows = [self._window(name, second) for name, _, _ in items]
        at = max(w.head for w in windows)  # seconds never go back in any of them
        for w in windows:
            if w.head < at:
                w.advance(at)
        if any(w.total + amount > limit for w, (_, amount, limit) in zip(windows, items)):
            fits = [w.fits_at(amount, limit) for w, (_, amount, limit) in zip(windows, items)]
            return [False, at, [w.total for w in windows], [w.clear_at() for w in windows],
                    -1 if -1 in fits else max(fits)]
        for w, (_, amount, _) in zip(windows, items):
            w.charge(amount)
        return [True, at, [w.total for w in windows], [w.clear_at() for w in windows], at]

    def window_lease(self, items: list[list], second: int, divisor: int) -> list:
        """``window_admit`` of ``(name, amount, limit, spare, held)`` items, and when admitted,
        up to ``spare`` more of each, counted in the same bucket, as a lease: what the holder
        may hand out itself during that second (``verdict + [leased]``). With what it already
        ``held``, a holder's lease is at most 1/``divisor`` of the room that is left, so that
        near its limit a window leases nothing and stays exact."""
        verdict = self.window_admit([(n, a, lim) for n, a, lim, _, _ in items], second)
        leased = [0] * len(items)
        if verdict[0]:
            totals, clear_at = verdict[2], verdict[3]
            for i, (name, _, limit, spare, held) in enumerate(items):
                extra = min(spare, (limit - totals[i]) // divisor - held)
                if extra > 0:
                    w = self._windows[name]
                    w.charge(extra)
                    totals[i], clear_at[i], leased[i] = w.total, w.clear_at(), extra
        verdict.append(leased)
        return verdict

    def window_add(self, name: str, second: int, delta: int) -> None:
        w = self._windows.get(name)
        if w is not None and w.head - BUCKETS < second <= w.head:
            w.ring[second % BUCKETS] += delta
            w.total += delta
            if delta > 0 and second > w.last:
                w.last = second

    def _window(self, name: str, second: int) -> _Window:
        w = self._windows.get(name)
        if w is None:
            if len(self._windows) >= self._windows_swept_at:
                self._sweep_windows(second)
            w = self._windows[name] = _Window(second)
        elif second > w.head:
            w.advance(second)
        return w

    def _sweep_windows(self, second: int) -> None:
        # A window that has seen nothing for BUCKETS seconds holds nothing.
        self._windows = {n: w for n, w in self._windows.items() if w.head > second - BUCKETS}
        self._windows_swept_at = max(1024, 2 * len(self._windows))

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._values.get(key)
        if entry is not None and entry[1] <= self._clock():
            del self._values[key]
            return None
        return entry

    def _set(self, key: str, value: int, ttl: float) -> None:
        now = self._clock()
        self._values[key] = (value, now + ttl)
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        # Budget windows end; without a sweep a long-running process would keep every past
        # window's counter forever.
        self._values = {k: e for k, e in self._values.items() if e[1] > now}
        self._next_sweep = now + SWEEP_INTERVAL


class MemoryCounters:
    """In-process counters: atomic because no operation awaits between read and write."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.table = CounterTable(clock)

    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        return self.table.try_add(key, amount, limit, ttl)

    async def add(self, key: str, amount: int, ttl: float) -> int:
        return self.table.add(key, amount, ttl)

    async def get(self, key: str) -> int:
        return self.table.get(key)

    async def seed(self, key: str, value: int, ttl: float) -> None:
        self.table.seed(key, value, ttl)

    async def window_admit(self, items: list[Item], second: int) -> Verdict:
        return self.table.window_admit(items, second)

    async def window_add(self, name: str, second: int, delta: int) -> None:
        self.table.window_add(name, second, delta)

    async def close(self) -> None:
        pass


def make_counters(redis_url: str | None, coordinator_socket: str | None,
                  redis_leases: bool = True) -> Counters:
    """Redis when configured (replicas; this replica's own counters while it is down),
    else the coordinator (workers), else in-process."""
    if redis_url:
        from modelmart.tenancy.fallback import FallbackCounters

        return FallbackCounters(RedisCounters(redis_url, leases=redis_leases))
    if coordinator_socket:
        from modelmart.tenancy.coordinator import CoordinatorCounters

        return CoordinatorCounters(coordinator_socket)
    return MemoryCounters()


from .redis_counters import RedisCounters  # noqa: E402  (it builds on this module's names)
