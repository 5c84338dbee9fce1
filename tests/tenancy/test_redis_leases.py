"""Replicas on one Redis lease their windows (``redis_counters.py``): the Lua lease does
what the coordinator's table does, replicas count each other by heartbeat, the promise
holds on a real clock, and a replica admits most requests without a round trip."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from modelmart.core.errors import RateLimited
from modelmart.tenancy import redis_counters
from modelmart.tenancy.coordinator import LEASE_DIVISOR
from modelmart.tenancy.counters import CounterTable, RedisCounters
from modelmart.tenancy.limits import RateLimiter

from .promise import make_key


class CountingRedis(RedisCounters):
    """Counts the commands it sends to Redis (every one goes through ``_call``)."""

    calls = 0

    async def _call(self, command):
        self.calls += 1
        return await super()._call(command)


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


async def test_the_lua_lease_answers_as_the_coordinators_table(redis_url):
    """Random leases, admissions and corrections on both, same arguments: same answers."""
    rng = random.Random(5)
    redis = RedisCounters(redis_url, namespace=namespace())
    table = CounterTable()
    second = 1_700_000_000
    try:
        for _ in range(400):
            second += rng.choice([0, 0, 0, 1, 2, 30, 61])
            names = rng.sample(["a", "b", "c"], rng.choice([1, 2]))
            items = [(n, rng.choice([0, 1, 5, 40]), rng.choice([10, 100, 1000]),
                      rng.choice([0, 32, 500]), rng.choice([0, 3])) for n in names]
            if rng.random() < 0.2:
                n, delta = rng.choice(names), rng.choice([-3, -1, 2])
                back = second - rng.choice([0, 1, 60, 61])
                await redis.window_add(n, back, delta)
                table.window_add(n, back, delta)
                continue
            got = await redis.window_lease(items, second)
            redis.replicas = 1  # as many as the table is told: the heartbeat may say more
            assert got == table.window_lease(items, second, LEASE_DIVISOR), items
    finally:
        await redis.close()


async def test_replicas_count_each_other_by_heartbeat(redis_url, monkeypatch):
    monkeypatch.setattr(redis_counters, "HEARTBEAT_TTL", 0.5)
    ns = namespace()
    replicas = [RedisCounters(redis_url, namespace=ns) for _ in range(3)]
    try:
        assert [await r.beat() for r in replicas] == [1, 2, 3]
        await replicas[2].close()  # leaves at once
        assert await replicas[0].beat() == 2
        await asyncio.sleep(0.6)  # replica 1 stopped beating: gone after the time-to-live
        assert await replicas[0].beat() == 1
        assert replicas[0].replicas == 1
    finally:
        for r in replicas[:2]:
            await r.close()


async def _hammer(limiters, key, seconds: float, concurrency: int, rng) -> list:
    """``concurrency`` clients per limiter for ``seconds`` of the real clock; returns the
    admissions as (second counted in, limiter index)."""
    admitted = []
    deadline = time.time() + seconds

    async def client(i: int) -> None:
        while time.time() < deadline:
            try:
                ticket = await limiters[i].admit(key, None, 10)
                admitted.append((ticket.second, i))
            except RateLimited:
                pass
            await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005]))

    await asyncio.gather(*(client(i) for i in range(len(limiters))
                           for _ in range(concurrency)))
    return admitted


async def test_two_leasing_replicas_keep_an_rpm_limit_on_the_real_clock(redis_url):
    """Two limiters, each on its own connection to one Redis (two replicas), 8 clients
    each for 3 s: everything lies within one minute, so at most the limit is admitted in
    total, and leases do not leave it much unused."""
    ns = namespace()
    limiters = [RateLimiter(RedisCounters(redis_url, namespace=ns)) for _ in range(2)]
    key = make_key(uuid.uuid4().int % 10**9, None, rpm=300)
    try:
        admitted = await _hammer(limiters, key, 3.0, 8, random.Random(2))
    finally:
        for limiter in limiters:
            await limiter.close()
            await limiter._counters.close()
    assert 290 <= len(admitted) <= 300
    assert {i for _, i in admitted} == {0, 1}  # both replicas served


@pytest.mark.parametrize("leases", [True, False])
async def test_round_trips_per_thousand_requests(redis_url, leases):
    """Far from the limit, two leasing replicas admit 1,000 requests with a few dozen
    commands to Redis between them, not one or more each."""
    ns = namespace()
    counters = [CountingRedis(redis_url, namespace=ns, leases=leases) for _ in range(2)]
    limiters = [RateLimiter(c) for c in counters]
    key = make_key(uuid.uuid4().int % 10**9, None, rpm=1_000_000)
    for limiter in limiters:  # warm: the first leases
        await limiter.admit(key, None, 10)
    for c in counters:
        c.calls = 0

    async def client(limiter) -> None:
        for _ in range(1000 // 16):
            await limiter.admit(key, None, 10)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(client(limiters[i % 2]) for i in range(16)))
        trips = sum(c.calls for c in counters)
    finally:
        for limiter in limiters:
            await limiter.close()
            await limiter._counters.close()
    print(f"leases={leases}: {trips} commands to Redis for 992 requests")
    if leases:
        assert trips <= 60
    else:
        assert trips >= 992
