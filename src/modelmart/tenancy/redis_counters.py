"""Counters in Redis, for replicas that share limits and budgets (``counters.py`` describes
the operations), and the replicas' heartbeat.

Windows can be leased (``window_lease``, as from the workers' coordinator, see ``leases.py``):
a replica holds up to 1/(``LEASE_DIVISOR`` x live replicas) of a window's room left, so it
admits most requests from memory. Each replica knows how many share the limits from a
heartbeat: every ``HEARTBEAT`` seconds it sets its own deadline in one sorted set (Redis's
clock), drops those past theirs, and reads how many are left. A replica that stops beating
(killed, cut off) leaves the count ``HEARTBEAT_TTL`` seconds later. The count only sizes the
leases: what any replica admits is checked in Redis, so the promise holds whatever it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from .coordinator import LEASE_DIVISOR
from .counters import WINDOW_TTL_MS, Item, Verdict

log = logging.getLogger(__name__)

HEARTBEAT = 2.0  # seconds between a replica's heartbeats
HEARTBEAT_TTL = 6.0  # a replica without a heartbeat for this long no longer counts
# A command that gets no answer in this long fails (then the limits fall back, fallback.py).
COMMAND_TIMEOUT = 2.0

# Lua numbers are doubles, exact only below 2**53 (about $9007 in picodollars), so the
# script compares decimal strings and lets INCRBY do the arithmetic in 64-bit integers.
# ARGV: ttl in ms, then the key's amount and its threshold (limit - amount).
_TRY_ADD_LUA = """
local function le(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = b:sub(2), a:sub(2) end
  if #a ~= #b then return #a < #b end
  return a <= b
end
local value = redis.call('GET', KEYS[1]) or '0'
if not le(value, ARGV[3]) then return {0, value} end
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {1, redis.call('GET', KEYS[1])}
"""

# A window is a hash: 'h' the newest second it has seen, 't' the total of its buckets, 'l' the
# newest second counted a positive amount, and one field per second (its decimal number)
# holding that second's bucket. Counts are far below 2**53, so Lua's doubles are exact.
# KEYS: the windows; ARGV: second, ttl in ms, then per window its amount and limit. The lease
# variant (``window_lease``) has a third fixed argument, the divisor, and per window also its
# spare and what the holder already holds: after an admission it counts up to ``spare`` more
# in the same bucket, at most 1/divisor of the room left minus what is held.
_WINDOW_LUA = """
local W, B, K = 61, @B@, @K@
local at, n = tonumber(ARGV[1]), #KEYS
local heads, totals, lasts = {}, {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'h', 't', 'l')
  heads[i], totals[i], lasts[i] = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or -1
  if heads[i] and heads[i] > at then at = heads[i] end
end
local fits, clear, admitted = at, {}, 1
for i = 1, n do
  local key, head = KEYS[i], heads[i]
  if head == nil or at - head >= W then
    if head then redis.call('DEL', key) end
    totals[i] = 0
    redis.call('HSET', key, 'h', at, 't', 0)
  elseif at > head then
    local old = {}
    for s = head - 60, at - 61 do old[#old + 1] = s end
    for _, v in ipairs(redis.call('HMGET', key, unpack(old))) do
      if v then totals[i] = totals[i] - tonumber(v) end
    end
    redis.call('HDEL', key, unpack(old))
    redis.call('HSET', key, 'h', at, 't', totals[i])
  end
  local amount, limit = tonumber(ARGV[B + K * (i - 1) + 1]), tonumber(ARGV[B + K * (i - 1) + 2])
  if totals[i] + amount > limit then
    admitted = 0
    local when = -1
    if amount <= limit then  -- the oldest buckets leave first
      local excess, seconds = totals[i] + amount - limit, {}
      for s = at - 60, at do seconds[#seconds + 1] = s end
      for j, v in ipairs(redis.call('HMGET', key, unpack(seconds))) do
        if v then excess = excess - tonumber(v) end
        if excess <= 0 then when = at + j break end
      end
      if when == -1 then when = at + W end
    end
    if fits ~= -1 and (when == -1 or when > fits) then fits = when end
  end
end
if admitted == 1 then
  for i = 1, n do
    local amount = ARGV[B + K * (i - 1) + 1]
    totals[i] = redis.call('HINCRBY', KEYS[i], 't', amount)
    redis.call('HINCRBY', KEYS[i], at, amount)
    if tonumber(amount) > 0 then
      lasts[i] = at
      redis.call('HSET', KEYS[i], 'l', at)
    end
  end
end
local leased = {}
if K == 4 then
  local divisor = tonumber(ARGV[3])
  for i = 1, n do
    leased[i] = 0
    if admitted == 1 then
      local base = B + K * (i - 1)
      local limit, spare, held = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]),
                                 tonumber(ARGV[base + 4])
      local extra = math.min(spare, math.floor((limit - totals[i]) / divisor) - held)
      if extra > 0 then
        totals[i] = redis.call('HINCRBY', KEYS[i], 't', extra)
        redis.call('HINCRBY', KEYS[i], at, extra)
        lasts[i] = at
        redis.call('HSET', KEYS[i], 'l', at)
        leased[i] = extra
      end
    end
  end
end
for i = 1, n do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
  if totals[i] > 0 then clear[i] = lasts[i] + W else clear[i] = 0 end
end
if K == 4 then return {admitted, at, totals, clear, fits, leased} end
return {admitted, at, totals, clear, fits}
"""
_WINDOW_ADMIT_LUA = _WINDOW_LUA.replace("@B@", "2").replace("@K@", "2")
_WINDOW_LEASE_LUA = _WINDOW_LUA.replace("@B@", "3").replace("@K@", "4")

# KEYS: the window; ARGV: second, delta.
_WINDOW_ADD_LUA = """
local head, s = tonumber(redis.call('HGET', KEYS[1], 'h')), tonumber(ARGV[1])
if head == nil or s > head or s <= head - 61 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 't', ARGV[2])
if tonumber(ARGV[2]) > 0 and s > (tonumber(redis.call('HGET', KEYS[1], 'l')) or -1) then
  redis.call('HSET', KEYS[1], 'l', s)
end
return 1
"""



# KEYS: the replicas' sorted set; ARGV: this replica's id, the time-to-live in ms. Redis's own
# clock, so replicas' clocks need not agree.
_HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


class RedisCounters:
    """Counters in Redis, atomic across replicas (Lua scripts for the conditional writes).
    ``leases``: the limiter leases windows (``window_lease``) rather than making a round trip
    per request. Redis unreachable (refused, reset, no answer in ``timeout``) is raised as
    the builtin ``ConnectionError``, whatever redis-py raised."""

    def __init__(self, url: str, namespace: str = "mm:", max_connections: int = 64,
                 leases: bool = True, timeout: float = COMMAND_TIMEOUT) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import ConnectionError as Refused, TimeoutError as Silent

        # A bounded pool that makes a burst wait for a connection instead of failing it.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10, socket_timeout=timeout,
            socket_connect_timeout=timeout)
        self._redis = aioredis.Redis.from_pool(pool)
        self._down = (Refused, Silent)
        self._ns = namespace
        self.leases = leases
        self.replica_id = uuid.uuid4().hex
        self.replicas = 1  # live replicas, as of the last heartbeat
        self._heart: asyncio.Task | None = None
        self._beaten = False
        self._try_add = self._redis.register_script(_TRY_ADD_LUA)
        self._window_admit = self._redis.register_script(_WINDOW_ADMIT_LUA)
        self._window_lease = self._redis.register_script(_WINDOW_LEASE_LUA)
        self._window_add = self._redis.register_script(_WINDOW_ADD_LUA)
        self._heartbeat = self._redis.register_script(_HEARTBEAT_LUA)

    async def _call(self, command):
        """Await a command; Redis out of reach is a ``ConnectionError``."""
        try:
            return await command
        except self._down as exc:
            raise ConnectionError(f"redis: {exc}") from exc

    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        # The threshold is exact here, so the script only compares.
        admitted, value = await self._call(self._try_add(
            keys=[self._ns + key], args=[_ms(ttl), amount, limit - amount]))
        return bool(admitted), int(value)

    async def add(self, key: str, amount: int, ttl: float) -> int:
        async def both() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(self._ns + key, amount)
                pipe.pexpire(self._ns + key, _ms(ttl))
                value, _ = await pipe.execute()
            return int(value)

        return await self._call(both())

    async def get(self, key: str) -> int:
        value = await self._call(self._redis.get(self._ns + key))
        return 0 if value is None else int(value)

    async def seed(self, key: str, value: int, ttl: float) -> None:
        await self._call(self._redis.set(self._ns + key, value, px=_ms(ttl), nx=True))

    async def window_admit(self, items: list[Item], second: int) -> Verdict:
        args: list[int] = [second, WINDOW_TTL_MS]
        for _, amount, limit in items:
            args += [amount, limit]
        admitted, at, totals, clear_at, fits_at = await self._call(self._window_admit(
            keys=[self._ns + name for name, _, _ in items], args=args))
        return [bool(admitted), at, totals, clear_at, fits_at]

    async def window_lease(self, items: list[tuple[str, int, int, int, int]], second: int
                           ) -> list:
        """``window_admit`` of ``(name, amount, limit, spare, held)`` items, leasing up to
        ``spare`` more of each: the verdict and what was leased (``CounterTable.window_lease``
        with ``LEASE_DIVISOR`` x live replicas)."""
        if self._heart is None:
            self.start()
        args: list[int] = [second, WINDOW_TTL_MS, LEASE_DIVISOR * self.replicas]
        for _, amount, limit, spare, held in items:
            args += [amount, limit, spare, held]
        admitted, at, totals, clear_at, fits_at, leased = await self._call(self._window_lease(
            keys=[self._ns + name for name, *_ in items], args=args))
        return [bool(admitted), at, totals, clear_at, fits_at, leased]

    async def window_add(self, name: str, second: int, delta: int) -> None:
        await self._call(self._window_add(keys=[self._ns + name], args=[second, delta]))

    def start(self) -> None:
        """Start beating (the first lease starts it too)."""
        if self._heart is None:
            self._heart = asyncio.ensure_future(self._beat_every(HEARTBEAT))

    async def beat(self) -> int:
        """Say this replica is alive; returns (and keeps) how many are."""
        self._beaten = True
        count = await self._call(self._heartbeat(
            keys=[self._ns + "replicas"], args=[self.replica_id, _ms(HEARTBEAT_TTL)]))
        self.replicas = max(1, int(count))
        return self.replicas

    async def _beat_every(self, seconds: float) -> None:
        while True:
            try:
                await self.beat()
            except ConnectionError as exc:  # fallback.py says so, loudly; keep trying
                log.debug("redis heartbeat failed: %s", exc)
            await asyncio.sleep(seconds)

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def reconnect(self) -> None:
        """Drop pooled connections (after an outage: their sockets may be dead)."""
        await self._redis.connection_pool.disconnect()

    async def close(self) -> None:
        if self._heart is not None:
            self._heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart
        if self._beaten:
            with contextlib.suppress(Exception):  # leave the count now, not in 6 s
                await self._redis.zrem(self._ns + "replicas", self.replica_id)
        await self._redis.aclose()
