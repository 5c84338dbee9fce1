"""The atomic counter primitive under rate limits and budgets, with interchangeable backends.

Every backend offers the same four coroutines:

- ``try_add(key, amount, limit, ttl) -> (admitted, value)``: atomically, if the current value
  plus ``amount`` is at most ``limit``, add it and return ``(True, new)``; otherwise change
  nothing and return ``(False, current)``.
- ``try_add_all([(key, amount, limit), ...], ttl) -> (admitted, values)``: the same for
  several distinct keys at once, all or nothing (a request's rpm and tpm, per key and per
  customer); ``values`` are the new values, or the current ones when refused.
- ``add(key, amount, ttl) -> new``: unconditional, may be negative (settling a reservation).
- ``get(key) -> value`` (0 when absent).
- ``seed(key, value, ttl)``: set only if absent (a budget counter seeded from the ledger).

A write (an admitted ``try_add``, an ``add``, a ``seed`` that sets) restarts the key's
time-to-live, so a counter expires only after ``ttl`` seconds without writes. Values are
exact integers; the Redis and coordinator backends hold them as signed 64-bit integers.

Backends: ``MemoryCounters`` (one process), ``RedisCounters`` (replicas sharing Redis) and
``CoordinatorCounters`` (workers on one machine sharing the supervisor's coordinator, see
``coordinator.py``). ``make_counters`` picks one from the settings.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

SWEEP_INTERVAL = 30.0  # seconds between purges of expired keys from a CounterTable


Item = tuple[str, int, int]  # (key, amount, limit) for try_add_all


class Counters(Protocol):
    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]: ...
    async def try_add_all(self, items: list[Item], ttl: float) -> tuple[bool, list[int]]: ...
    async def add(self, key: str, amount: int, ttl: float) -> int: ...
    async def get(self, key: str) -> int: ...
    async def seed(self, key: str, value: int, ttl: float) -> None: ...
    async def close(self) -> None: ...


class CounterTable:
    """The synchronous core: a dict of (value, expires_at). The coordinator serves one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._clock = clock
        self._next_sweep = clock() + SWEEP_INTERVAL

    def get(self, key: str) -> int:
        entry = self._live(key)
        return 0 if entry is None else entry[0]

    def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        current = self.get(key)
        if current + amount > limit:
            return False, current
        self._set(key, current + amount, ttl)
        return True, current + amount

    def try_add_all(self, items: list[Item], ttl: float) -> tuple[bool, list[int]]:
        if len(items) == 1:  # the usual request: one limit
            key, amount, limit = items[0]
            admitted, value = self.try_add(key, amount, limit, ttl)
            return admitted, [value]
        current = [self.get(key) for key, _, _ in items]
        if any(c + amount > limit for c, (_, amount, limit) in zip(current, items)):
            return False, current
        for c, (key, amount, _) in zip(current, items):
            self._set(key, c + amount, ttl)
        return True, [c + amount for c, (_, amount, _) in zip(current, items)]

    def lease_all(self, items: list[list], ttl: float, divisor: int = 1) -> list:
        """``try_add_all`` of ``(key, amount, limit, spare, held)`` items, and when admitted,
        up to ``spare`` more of each as a lease (``[admitted, values, leased]``): what the
        holder may hand out itself. With what it already ``held``, a holder's lease is at
        most 1/``divisor`` of the room that is left, so that near its limit a counter
        leases nothing and stays exact."""
        admitted, values = self.try_add_all([(k, a, lim) for k, a, lim, _, _ in items], ttl)
        leased = [0] * len(items)
        if admitted:
            for i, (key, _, limit, spare, held) in enumerate(items):
                extra = min(spare, (limit - values[i]) // divisor - held)
                if extra > 0:
                    values[i] = self.add(key, extra, ttl)
                    leased[i] = extra
        return [admitted, values, leased]

    def add(self, key: str, amount: int, ttl: float) -> int:
        value = self.get(key) + amount
        self._set(key, value, ttl)
        return value

    def seed(self, key: str, value: int, ttl: float) -> None:
        if self._live(key) is None:
            self._set(key, value, ttl)

    def __len__(self) -> int:
        return len(self._values)

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
        # Window keys are written once a minute and never read again; without a sweep
        # a long-running process would keep every past window forever.
        self._values = {k: e for k, e in self._values.items() if e[1] > now}
        self._next_sweep = now + SWEEP_INTERVAL


class MemoryCounters:
    """In-process counters: atomic because no operation awaits between read and write."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.table = CounterTable(clock)

    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        return self.table.try_add(key, amount, limit, ttl)

    async def try_add_all(self, items: list[Item], ttl: float) -> tuple[bool, list[int]]:
        return self.table.try_add_all(items, ttl)

    async def add(self, key: str, amount: int, ttl: float) -> int:
        return self.table.add(key, amount, ttl)

    async def get(self, key: str) -> int:
        return self.table.get(key)

    async def seed(self, key: str, value: int, ttl: float) -> None:
        self.table.seed(key, value, ttl)

    async def close(self) -> None:
        pass


# Lua numbers are doubles, exact only below 2**53 (about $9007 in picodollars), so the
# script compares decimal strings and lets INCRBY do the arithmetic in 64-bit integers.
# ARGV: ttl in ms, then per key its amount and its threshold (limit - amount).
_TRY_ADD_ALL_LUA = """
local function le(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = b:sub(2), a:sub(2) end
  if #a ~= #b then return #a < #b end
  return a <= b
end
local values, fits = {}, 1
for i, key in ipairs(KEYS) do
  values[i] = redis.call('GET', key) or '0'
  if not le(values[i], ARGV[2 * i + 1]) then fits = 0 end
end
if fits == 0 then return {0, values} end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, ARGV[2 * i])
  redis.call('PEXPIRE', key, ARGV[1])
  values[i] = redis.call('GET', key)
end
return {1, values}
"""


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


class RedisCounters:
    """Counters in Redis, atomic across replicas (a Lua script for the conditional add)."""

    def __init__(self, url: str, namespace: str = "mm:", max_connections: int = 64) -> None:
        import redis.asyncio as aioredis

        # A bounded pool that makes a burst wait for a connection instead of failing it.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections,
                                                        timeout=10)
        self._redis = aioredis.Redis.from_pool(pool)
        self._ns = namespace
        self._try_add_all = self._redis.register_script(_TRY_ADD_ALL_LUA)

    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        admitted, values = await self.try_add_all([(key, amount, limit)], ttl)
        return admitted, values[0]

    async def try_add_all(self, items: list[Item], ttl: float) -> tuple[bool, list[int]]:
        args: list[int] = [_ms(ttl)]
        for _, amount, limit in items:
            args += [amount, limit - amount]  # exact here, so the script only compares
        admitted, values = await self._try_add_all(
            keys=[self._ns + key for key, _, _ in items], args=args)
        return bool(admitted), [int(v) for v in values]

    async def add(self, key: str, amount: int, ttl: float) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(self._ns + key, amount)
            pipe.pexpire(self._ns + key, _ms(ttl))
            value, _ = await pipe.execute()
        return int(value)

    async def get(self, key: str) -> int:
        value = await self._redis.get(self._ns + key)
        return 0 if value is None else int(value)

    async def seed(self, key: str, value: int, ttl: float) -> None:
        await self._redis.set(self._ns + key, value, px=_ms(ttl), nx=True)

    async def close(self) -> None:
        await self._redis.aclose()


def make_counters(redis_url: str | None, coordinator_socket: str | None) -> Counters:
    """Redis when configured (replicas), else the coordinator (workers), else in-process."""
    if redis_url:
        return RedisCounters(redis_url)
    if coordinator_socket:
        from modelmart.tenancy.coordinator import CoordinatorCounters

        return CoordinatorCounters(coordinator_socket)
    return MemoryCounters()
