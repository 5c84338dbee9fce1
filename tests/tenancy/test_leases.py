"""Rate-limit leases: workers sharing the coordinator's counters admit most requests from
what they hold, never more than the limit, and exactly the limit when it is small."""

from __future__ import annotations

import random

import pytest

from modelmart.core.errors import RateLimited
from modelmart.tenancy.counters import CounterTable, MemoryCounters
from modelmart.tenancy.coordinator import LEASE_DIVISOR
from modelmart.tenancy.limits import RateLimiter

from .test_limits import MINUTE, T0, make_key


class Coordinator(MemoryCounters):
    """One table shared by several limiters (the workers), as the coordinator serves it,
    counting the round trips each worker makes."""

    def __init__(self, table: CounterTable, workers: int) -> None:
        self.table, self.workers, self.calls = table, workers, 0

    async def lease_all(self, items, ttl):
        self.calls += 1
        return tuple(self.table.lease_all(items, ttl, LEASE_DIVISOR * self.workers))

    async def add(self, key, amount, ttl):
        self.calls += 1
        return self.table.add(key, amount, ttl)


def workers(n: int):
    table = CounterTable()
    conns = [Coordinator(table, n) for _ in range(n)]
    return table, conns, [RateLimiter(c) for c in conns]


async def admit_all(limiters, key, attempts, now, tokens=0, rng=None) -> int:
    rng = rng or random.Random(1)
    admitted = 0
    for _ in range(attempts):
        try:
            await rng.choice(limiters).admit(key, None, tokens, now=now)
            admitted += 1
        except RateLimited:
            pass
    return admitted


def test_lease_all_leases_only_a_share_of_the_room_left():
    table = CounterTable()
    admitted, values, leased = table.lease_all([("a", 1, 1000, 32), ("b", 5, 10, 160)], 60, 32)
    # a: 999 left after the request, 999 // 32 = 31 leased; b: 5 left, nothing leased
    assert (admitted, values, leased) == (True, [32, 5], [31, 0])
    admitted, values, leased = table.lease_all([("a", 1, 1000, 32), ("b", 6, 10, 0)], 60, 32)
    assert (admitted, values, leased) == (False, [32, 5], [0, 0])  # all or nothing
    assert table.get("a") == 32 and table.get("b") == 5


@pytest.mark.parametrize("limit", [1, 5, 20, 32])
async def test_small_limits_stay_exact_across_workers(limit):
    # Up to 16 rooms a worker (32 here), nothing is leased: one worker's requests, then
    # only the other's, still reach the limit exactly.
    _, _, (a, b) = workers(2)
    key = make_key(rpm=limit)
    assert await admit_all([a], key, limit // 2, T0) == limit // 2
    assert await admit_all([b], key, 2 * limit, T0) == limit - limit // 2
    assert await admit_all([a, b], key, limit, T0) == 0


async def test_large_limits_take_few_round_trips_and_never_admit_more_than_the_limit():
    table, conns, limiters = workers(2)
    key = make_key(rpm=100_000)
    assert await admit_all(limiters, key, 5000, T0) == 5000
    assert sum(c.calls for c in conns) < 5000 / 20  # most were admitted from leases
    counter = next(k for k in table._values if k.startswith("rl:"))
    assert 5000 <= table.get(counter) <= 5000 + 2 * 32  # plus what the leases still hold

    # To its limit: one worker, then only the other, which may be refused while the first
    # still holds part of a lease (at most 1/32 of the room left when it was taken).
    key = make_key(key_id=2, rpm=1000)
    a, b = limiters
    first = await admit_all([a], key, 500, T0)
    held = a._leases[f"rl:k{key.id}:r:{int(T0 // 60)}"][0]
    assert first == 500 and 0 < held <= 500 // (2 * LEASE_DIVISOR)
    assert await admit_all([b], key, 1000, T0) == 500 - held
    assert await admit_all([a], key, 1000, T0) == held  # the first worker still has them


async def test_unused_leases_go_back_when_the_minute_ends():
    table, conns, limiters = workers(2)
    key = make_key(rpm=100_000)
    assert await admit_all(limiters, key, 7, T0) == 7
    old = f"rl:k{key.id}:r:{int(T0 // 60)}"
    assert table.get(old) > 7  # leased ahead
    for limiter in limiters:  # each worker's first request of the next minute
        await limiter.admit(key, None, 0, now=MINUTE + 61)
    assert table.get(old) == 7  # the previous minute counts what was admitted


async def test_a_refused_request_gives_back_what_it_took_from_the_lease():
    table, _, (limiter,) = workers(1)
    key = make_key(rpm=100_000, tpm=2_000_000)
    await limiter.admit(key, None, 100, now=T0)  # leases tokens (and requests) ahead
    tokens = f"rl:k{key.id}:t:{int(T0 // 60)}"
    held = limiter._leases[tokens][0]
    assert held > 0
    with pytest.raises(RateLimited):  # takes the tokens held, the rest is refused
        await limiter.admit(key, None, 5_000_000, now=T0)
    assert limiter._leases[tokens][0] == held


async def test_token_settlement_and_headers_with_leases():
    table, _, (limiter,) = workers(1)
    key = make_key(rpm=100_000, tpm=10_000_000)
    first = await limiter.admit(key, None, 1000, now=T0)
    second = await limiter.admit(key, None, 1000, now=T0)  # from the lease
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == \
        int(first.headers["x-ratelimit-remaining-tokens"]) - 1000
    await limiter.settle(second, 400)  # 600 fewer than estimated, given back at once
    tokens = f"rl:k{key.id}:t:{int(T0 // 60)}"
    assert table.get(tokens) == 2000 - 600 + limiter._leases[tokens][0]
