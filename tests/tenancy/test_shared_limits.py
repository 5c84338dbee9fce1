"""The promise when limiters share their windows: two RateLimiters on one Redis (replicas,
leasing, or exact with a round trip per request), or two workers' limiters on the
coordinator (with leases), under concurrent bursts."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from modelmart.core.errors import RateLimited
from modelmart.tenancy.coordinator import CoordinatorCounters
from modelmart.tenancy.counters import RedisCounters
from modelmart.tenancy.limits import RateLimiter

from .promise import T0, Clock, LimitLog, make_key


def shared(kind: str, request, clock: Clock) -> list[RateLimiter]:
    if kind in ("redis", "redis-exact"):
        url = request.getfixturevalue("redis_url")
        return [RateLimiter(RedisCounters(url, leases=kind == "redis"), clock)
                for _ in range(2)]
    path = request.getfixturevalue("coordinator_socket")
    return [RateLimiter(CoordinatorCounters(path), clock) for _ in range(2)]


async def close(limiters) -> None:
    for limiter in limiters:
        await limiter.close()
        await limiter._counters.close()


@pytest.mark.parametrize("kind", ["redis", "redis-exact", "coordinator"])
async def test_many_requests_at_once_on_two_limiters_never_exceed_the_limit(kind, request):
    clock = Clock()
    limiters = shared(kind, request, clock)
    key = make_key(uuid.uuid4().int % 10**9, rpm=50, tpm=100_000)
    try:
        results = await asyncio.gather(*(limiters[i % 2].admit(key, None, 100)
                                         for i in range(400)), return_exceptions=True)
    finally:
        await close(limiters)
    assert sum(not isinstance(r, BaseException) for r in results) == 50
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))


@pytest.mark.parametrize("kind", ["redis", "redis-exact", "coordinator"])
@pytest.mark.parametrize("seed", range(2))
async def test_two_limiters_sharing_windows_keep_the_promise(kind, seed, request):
    """Bursts of concurrent requests on both limiters for three minutes of a fake clock: no
    60 seconds and no 61 buckets hold more than a limit; without leases (redis-exact) a
    refusal is tight: its amount did not fit in what its buckets held."""
    rng = random.Random(seed)
    clock = Clock(T0)
    limiters = shared(kind, request, clock)
    key_id, customer_id = (uuid.uuid4().int % 10**9 for _ in range(2))
    key = make_key(key_id, customer_id, rpm=rng.choice([10, 60, 5000]), tpm=3000)
    customer = (rng.choice([40, None]), None)
    logs = {"r": LimitLog(key.rpm), "t": LimitLog(key.tpm)}
    if customer[0] is not None:
        logs["cr"] = LimitLog(customer[0])
    refusals = []

    async def one(limiter, tokens: int) -> None:
        now = clock.now
        try:
            ticket = await limiter.admit(key, customer, tokens)
        except RateLimited:
            refusals.append((now, tokens))
            return
        assert ticket.second == int(now)  # the clock stands still during a burst
        for k, amount in (("r", 1), ("t", tokens), ("cr", 1)):
            if k in logs:
                logs[k].add(now, ticket.second, amount)

    try:
        while clock.now < T0 + 180:
            burst = [one(rng.choice(limiters), rng.choice([0, 20, 150]))
                     for _ in range(rng.choice([1, 4, 30]))]
            await asyncio.gather(*burst)
            for log in logs.values():
                log.check(since=int(clock.now))
            if kind == "redis-exact":
                for now, tokens in refusals:
                    amounts = {"r": 1, "t": tokens, "cr": 1}
                    assert any(log.in_window(now) + amounts[k] > log.limit
                               for k, log in logs.items()), (now, tokens)
            refusals.clear()
            clock.now += rng.choice([0.0, 0.2, 0.9, 1.0, 7.0, 30.0])
    finally:
        await close(limiters)
    assert all(log.admitted for log in logs.values())
