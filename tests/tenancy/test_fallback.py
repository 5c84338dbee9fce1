"""Redis down: each replica counts its share of every limit and budget itself, says so,
and goes back to Redis when it answers again (``fallback.py``)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from modelmart.core.errors import PaymentRequired, RateLimited
from modelmart.tenancy.budgets import Budgets
from modelmart.tenancy.counters import CounterTable, MemoryCounters, make_counters
from modelmart.tenancy.fallback import FallbackCounters
from modelmart.tenancy.limits import RateLimiter
from tests.redis_server import RedisProcess
from tests.tenancy.test_budgets import NOW, UNIT
from tests.tenancy.test_budgets import make_key as budget_key

from .promise import T0, Clock, make_key


class FlakyShared(MemoryCounters):
    """Shared counters (one table for every replica) that a test can take down."""

    def __init__(self, table: CounterTable, replicas: int) -> None:
        self.table, self.replicas, self.down = table, replicas, False
        self.leases = False

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if (name in ("try_add", "add", "get", "seed", "window_admit", "window_add", "ping",
                     "beat") and super().__getattribute__("down")):
            async def refused(*args):
                raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            return refused
        return attr

    async def ping(self) -> None:
        pass

    async def beat(self) -> int:
        return self.replicas

    async def reconnect(self) -> None:
        pass

    def start(self) -> None:
        pass


def replicas(n: int, clock: Clock | None = None):
    table = CounterTable()
    shared = [FlakyShared(table, n) for _ in range(n)]
    fallbacks = [FallbackCounters(s, probe_interval=0.02) for s in shared]
    return table, shared, fallbacks, [RateLimiter(f, clock or Clock()) for f in fallbacks]


async def admit_many(limiter, key, n: int) -> list:
    results = await asyncio.gather(*(limiter.admit(key, None, 0) for _ in range(n)),
                                   return_exceptions=True)
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))
    return [r for r in results if not isinstance(r, BaseException)]


async def test_redis_down_each_replica_admits_its_share_and_says_so(caplog):
    caplog.set_level(logging.WARNING, "modelmart.limits")
    clock = Clock(T0)
    _, shared, fallbacks, limiters = replicas(2, clock)
    key = make_key(uuid.uuid4().int % 10**9, None, rpm=60)
    assert len(await admit_many(limiters[0], key, 10)) == 10  # shared: 50 left
    for s in shared:
        s.down = True
    clock.now += 1
    admitted = [await admit_many(limiter, key, 100) for limiter in limiters]
    # Never "no limits": each replica its half of 60, counted from the outage on.
    assert [len(a) for a in admitted] == [30, 30]
    assert all(f.degraded for f in fallbacks)
    assert admitted[0][-1].headers["x-ratelimit-remaining-requests"] == "0"
    assert admitted[0][0].headers["x-ratelimit-remaining-requests"] == "29"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "fall back to this replica's own counters" in warnings[0]
    assert "divided by 2 replica(s)" in warnings[0] and "Connection refused" in warnings[0]

    for s in shared:
        s.down = False
    for f in fallbacks:
        for _ in range(100):
            if not f.degraded:
                break
            await asyncio.sleep(0.01)
    assert not any(f.degraded for f in fallbacks)
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 2
    # Shared again: the 10 admitted before the outage still count, the outage's do not.
    assert len(await admit_many(limiters[1], key, 100)) == 50


async def test_a_budget_falls_back_to_a_share_of_what_the_ledger_says_is_left(store):
    _, shared, fallbacks, _ = replicas(2)
    key_id = uuid.uuid4().int % 10**9
    store.ledger.append((key_id, NOW - 60, 40 * UNIT))
    key = budget_key(key_id, 100 * UNIT)
    budgets = [Budgets(f, store) for f in fallbacks]
    await budgets[0].reserve(key, 10 * UNIT, now=NOW)  # in the shared counter
    for s in shared:
        s.down = True
    # 60 left by the ledger (the shared counter's reservation is not seen): 30 each.
    for b in budgets:
        assert [await b.reserve(key, 10 * UNIT, now=NOW) for _ in range(3)]
        with pytest.raises(PaymentRequired):
            await b.reserve(key, 10 * UNIT, now=NOW)


async def test_corrections_go_where_the_count_is(store):
    table, shared, fallbacks, limiters = replicas(1)
    budgets = Budgets(fallbacks[0], store)
    key = budget_key(uuid.uuid4().int % 10**9, 100 * UNIT)
    on_redis = await budgets.reserve(key, 10 * UNIT, now=NOW)
    shared[0].down = True
    on_memory = await budgets.reserve(key, 10 * UNIT, now=NOW)
    await budgets.settle(on_redis, 1 * UNIT)  # Redis gone: the reservation stays there
    assert table.get(on_redis.counter) == 10 * UNIT
    shared[0].down = False
    await asyncio.sleep(0.1)
    assert not fallbacks[0].degraded
    await budgets.settle(on_memory, 2 * UNIT)  # settled in the memory it was made in
    assert on_memory.counters.table.get(on_memory.counter) == 2 * UNIT
    assert table.get(on_redis.counter) == 10 * UNIT
    # Back on Redis the budget is seeded again (set only if absent: kept here).
    await budgets.reserve(key, 5 * UNIT, now=NOW)
    assert table.get(on_redis.counter) == 15 * UNIT


async def test_a_real_redis_outage_and_its_return(caplog):
    """Stop the real redis-server mid-way: the limiter keeps admitting on this replica's
    counters, the probe finds Redis back on the same port, and counts go to Redis again."""
    caplog.set_level(logging.WARNING, "modelmart.limits")
    server = RedisProcess().start()
    counters = make_counters(server.url, None)
    assert isinstance(counters, FallbackCounters)
    counters._probe_interval = 0.05
    await counters.start()
    limiter = RateLimiter(counters)
    key = make_key(uuid.uuid4().int % 10**9, None, rpm=1000)
    try:
        await limiter.admit(key, None, 1)
        assert not counters.degraded
        server.stop()
        started = time.monotonic()
        for _ in range(300):  # from the lease it holds, until that second ends; then memory
            ticket = await limiter.admit(key, None, 1)
            if ticket.counters is not counters.primary:
                break
            await asyncio.sleep(0.01)
        assert time.monotonic() - started < 3
        assert counters.degraded and ticket.counters is counters.local
        server.start()
        deadline = time.monotonic() + 10
        while counters.degraded and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not counters.degraded
        ticket = await limiter.admit(key, None, 1)
        assert ticket.counters is counters.primary
        # A restarted Redis starts empty: this request (and its lease) is all it holds.
        assert await counters.primary._redis.exists(f"mm:rl:k{key.id}:r")
    finally:
        await limiter.close()
        await counters.close()
        server.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m for m in messages)
    assert any("reachable again" in m for m in messages)
