"""Rate-limit leases: workers sharing the coordinator's windows admit most requests from
what they hold, for the second it was leased in, never more than the limit, and exactly the
limit when it is small."""

from __future__ import annotations

import asyncio
import random

import pytest

from modelmart.core.errors import RateLimited
from modelmart.tenancy.counters import BUCKETS, CounterTable, MemoryCounters
from modelmart.tenancy.coordinator import LEASE_DIVISOR
from modelmart.tenancy.leases import LEASE
from modelmart.tenancy.limits import RateLimiter

from .promise import T0, Clock, LimitLog, make_key

S0 = int(T0)  # the second of T0


class Coordinator(MemoryCounters):
    """One table shared by several limiters (the workers), as the coordinator serves it,
    counting the round trips each worker makes."""

    def __init__(self, table: CounterTable, workers: int) -> None:
        self.table, self.workers, self.calls = table, workers, 0

    async def window_lease(self, items, second):
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other requests run meanwhile
        return self.table.window_lease(items, second, LEASE_DIVISOR * self.workers)

    async def window_add(self, name, second, delta):
        self.calls += 1
        await asyncio.sleep(0)
        return self.table.window_add(name, second, delta)


def workers(n: int, clock: Clock | None = None):
    table, clock = CounterTable(), clock or Clock()
    conns = [Coordinator(table, n) for _ in range(n)]
    return table, conns, [RateLimiter(c, clock) for c in conns]


def total(table: CounterTable, name: str) -> int:
    """What the window ``name`` holds (at the newest second it has seen)."""
    window = table._windows.get(name)
    return 0 if window is None else window.total


def bucket(table: CounterTable, name: str, second: int) -> int:
    window = table._windows[name]
    assert window.head - BUCKETS < second <= window.head
    return window.ring[second % BUCKETS]


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


async def quiet(*limiters) -> None:
    """Until no top-up or give-back is under way in any of them."""
    while any(l._leases._refills or l._leases._returns for l in limiters):
        await asyncio.sleep(0)


def test_window_lease_leases_only_a_share_of_the_room_left_in_the_same_bucket():
    table = CounterTable()
    verdict = table.window_lease([("a", 1, 1000, 32, 0), ("b", 5, 10, 160, 0)], S0, 32)
    # a: 999 left after the request, 999 // 32 = 31 leased; b: 5 left, nothing leased
    assert verdict == [True, S0, [32, 5], [S0 + 61, S0 + 61], S0, [31, 0]]
    verdict = table.window_lease([("a", 1, 1000, 32, 0), ("b", 6, 10, 0, 0)], S0, 32)
    assert verdict[0] is False and verdict[2] == [32, 5] and verdict[5] == [0, 0]
    assert total(table, "a") == 32 and total(table, "b") == 5
    # What the holder already has counts: 967 left, 30 allowed, 25 held, so 5 more.
    verdict = table.window_lease([("a", 1, 1000, 100, 25)], S0 + 1, 32)
    assert verdict[:3] == [True, S0 + 1, [38]] and verdict[5] == [5]
    assert bucket(table, "a", S0) == 32 and bucket(table, "a", S0 + 1) == 6


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
    await quiet(*limiters)
    counter = "rl:k1:r"
    held = [l._leases.held[counter][0] for l in limiters]
    assert total(table, counter) == 5000 + sum(held)  # plus what the leases still hold
    assert all(h <= 100_000 // 32 for h in held)

    # To its limit: one worker, then only the other, which may be refused while the first
    # still holds part of a lease (at most 1/32 of the room left when it was taken).
    key = make_key(key_id=2, rpm=1000)
    a, b = limiters
    first = await admit_all([a], key, 500, T0)
    await quiet(a)
    held = a._leases.held[f"rl:k{key.id}:r"][0]
    # At most half a lease (when it tops up) plus 1/32 of the room left then.
    assert first == 500 and 0 < held <= LEASE // 2 + 500 // (2 * LEASE_DIVISOR)
    assert await admit_all([b], key, 1000, T0) == 500 - held
    assert await admit_all([a], key, 1000, T0) == held  # the first worker still has them


async def test_unused_leases_go_back_when_the_second_ends():
    clock = Clock(T0 + 0.99)  # the end-of-second timers are due in 10 ms
    table, conns, limiters = workers(2, clock)
    key = make_key(rpm=100_000)
    assert await admit_all(limiters, key, 7, clock.now) == 7
    assert bucket(table, "rl:k1:r", S0) > 7  # leased ahead
    a, b = limiters
    clock.now = T0 + 1.2
    await a.admit(key, None, 0)  # a's first request of the next second gives a's back
    await asyncio.sleep(0.05)  # b is idle: its timer gives b's back when the second ends
    assert not b._leases.held and b._leases.second == S0 + 1
    while a._leases.returning or b._leases.returning:
        await asyncio.sleep(0)
    assert bucket(table, "rl:k1:r", S0) == 7  # second S0 counts what was admitted in it
    assert bucket(table, "rl:k1:r", S0 + 1) == 1 + a._leases.held["rl:k1:r"][0]


async def test_a_refused_request_gives_back_what_it_took_from_the_lease():
    table, _, (limiter,) = workers(1)
    key = make_key(rpm=100_000, tpm=2_000_000)
    await limiter.admit(key, None, 100, now=T0)  # leases tokens (and requests) ahead
    tokens = f"rl:k{key.id}:t"
    held = limiter._leases.held[tokens][0]
    assert held > 0
    with pytest.raises(RateLimited):  # takes the tokens held, the rest is refused
        await limiter.admit(key, None, 5_000_000, now=T0)
    assert limiter._leases.held[tokens][0] == held


async def test_token_settlement_and_headers_with_leases():
    table, _, (limiter,) = workers(1)
    key = make_key(rpm=100_000, tpm=10_000_000)
    first = await limiter.admit(key, None, 1000, now=T0)
    second = await limiter.admit(key, None, 1000, now=T0)  # from the lease
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == \
        int(first.headers["x-ratelimit-remaining-tokens"]) - 1000
    await limiter.settle(second, 400)  # 600 fewer than estimated, given back at once
    tokens = f"rl:k{key.id}:t"
    assert total(table, tokens) == 2000 - 600 + limiter._leases.held[tokens][0]


async def test_concurrent_requests_in_one_worker_make_one_trip_at_a_time():
    table, conns, (a, b) = workers(2)
    key = make_key(rpm=1000, tpm=100_000)
    results = await asyncio.gather(*(a.admit(key, None, 50, now=T0) for _ in range(300)),
                                   return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results)
    requests, tokens = a._leases.held["rl:k1:r"], a._leases.held["rl:k1:t"]
    # Held at most 1/32 of what was left, never the sum of many trips.
    await quiet(a)
    assert requests[0] <= 1000 // 32 and tokens[0] <= 100_000 // 32
    assert conns[0].calls < 300 // 10
    # The other worker alone reaches the limits but for what the first one holds.
    got = await admit_all([b], key, 2000, T0, tokens=50)
    assert got >= min(700 - requests[0], (85_000 - tokens[0]) // 50) - 1


async def test_tight_token_limit_with_many_requests_at_once_is_used_up():
    # rpm 200 and tpm 20,000 at 100 tokens a request: 200 requests fit, from both workers.
    _, _, limiters = workers(2)
    key = make_key(rpm=200, tpm=20_000)
    rng = random.Random(4)
    results = await asyncio.gather(*(rng.choice(limiters).admit(key, None, 100, now=T0)
                                     for _ in range(2000)), return_exceptions=True)
    admitted = sum(not isinstance(r, BaseException) for r in results)
    assert 190 <= admitted <= 200


class SlowCoordinator(Coordinator):
    def __init__(self, table, workers):
        super().__init__(table, workers)
        self.gate = asyncio.Event()

    async def window_lease(self, items, second):
        await self.gate.wait()
        return await super().window_lease(items, second)


def one_slow_worker(kind=None):
    """One worker whose coordinator answers only when ``gate`` is set, and a key with room."""
    table = CounterTable()
    slow = (kind or SlowCoordinator)(table, 1)
    return table, slow, RateLimiter(slow, Clock()), make_key(rpm=100_000)


async def test_a_lease_granted_after_its_second_ended_goes_back():
    table, slow, limiter, key = one_slow_worker()
    late = asyncio.ensure_future(limiter.admit(key, None, 0, now=T0))
    for _ in range(2):  # until its trip waits for the coordinator
        await asyncio.sleep(0)
    nxt = asyncio.ensure_future(limiter.admit(key, None, 0, now=T0 + 1))  # next second
    for _ in range(2):
        await asyncio.sleep(0)
    slow.gate.set()
    first, second = await asyncio.gather(late, nxt)
    assert (first.second, second.second) == (S0, S0 + 1)
    while limiter._leases.returning:
        await asyncio.sleep(0)
    assert bucket(table, "rl:k1:r", S0) == 1  # its lease went back at once
    assert bucket(table, "rl:k1:r", S0 + 1) == 1 + limiter._leases.held["rl:k1:r"][0]


class FailingCoordinator(Coordinator):
    async def window_lease(self, items, second):
        self.calls += 1
        await asyncio.sleep(0.01)
        raise TimeoutError("coordinator did not answer in time")


async def test_requests_waiting_for_a_trip_that_fails_fail_with_it():
    conn = FailingCoordinator(CounterTable(), 1)
    limiter = RateLimiter(conn, Clock())
    key = make_key(rpm=100_000)
    results = await asyncio.gather(*(limiter.admit(key, None, 0, now=T0) for _ in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    assert conn.calls == 1  # one failed trip, not ten in a row
    assert not limiter._leases._asking and not limiter._leases._asked


async def test_keys_of_one_customer_share_what_is_asked_for_its_counter():
    table, _, (a, b) = workers(2)
    keys = [make_key(key_id=i, rpm=100_000) for i in range(1, 41)]
    customer = (10_000, None)
    results = await asyncio.gather(*(a.admit(k, customer, 0, now=T0) for k in keys))
    assert len(results) == 40
    held = a._leases.held["rl:c7:r"][0]
    assert held <= 2 * 32  # not 40 keys' worth of leases of the customer's counter


async def test_a_request_cancelled_during_its_trip_leaves_what_it_was_granted_held():
    table, slow, limiter, key = one_slow_worker()
    request = asyncio.ensure_future(limiter.admit(key, None, 0, now=T0))
    await asyncio.sleep(0)
    request.cancel()
    await asyncio.sleep(0)
    slow.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert request.cancelled()
    counter = "rl:k1:r"
    assert total(table, counter) == limiter._leases.held[counter][0] > 1  # nothing lost
    await limiter.admit(key, None, 0, now=T0)  # and the next request is served from it
    assert slow.calls == 1


async def test_a_lease_is_topped_up_before_it_runs_out_and_grows_with_demand():
    table, conns, (a,) = workers(1)
    key = make_key(rpm=1_000_000)
    counter, keys = "rl:k1:r", ("rl:k1:r",)
    asking = (S0, keys)
    await a.admit(key, None, 0, now=T0)  # the first trip: 1 + 32 leased
    assert a._leases.held[counter][0] == 32
    for _ in range(17):  # down to 15, under half: a top-up starts, nobody waits
        await a.admit(key, None, 0, now=T0)
    assert a._leases._refills and asking in a._leases._asking
    await quiet(a)
    assert a._leases.held[counter][0] == 32 and not a._leases._short
    assert a._leases._want.get(keys, LEASE) == LEASE
    # Many requests at once outrun the lease: they wait, and the next trips ask for more.
    await asyncio.gather(*(a.admit(key, None, 0, now=T0) for _ in range(500)))
    assert a._leases._want[keys] > LEASE
    await quiet(a)
    assert total(table, counter) == 1 + 17 + 500 + a._leases.held[counter][0]


async def test_near_its_cap_a_worker_does_not_top_up_at_every_request():
    # 8 workers: a worker may hold ~2,000/128 = 15, under half of 32; topping up whenever
    # fewer than 16 are held would make a trip at nearly every request.
    _, conns, (a, *_) = workers(8)
    key = make_key(rpm=2000)
    for _ in range(1000):  # one at a time, the loop turning between them
        await a.admit(key, None, 0, now=T0)
        await asyncio.sleep(0)
    assert conns[0].calls < 160  # 127; topping up below 16 held made it 202


@pytest.mark.parametrize("turns", range(5))
async def test_a_cancelled_request_loses_nothing_whenever_its_answer_comes(turns):
    table, slow, limiter, key = one_slow_worker()
    request = asyncio.ensure_future(limiter.admit(key, None, 0, now=T0))
    await asyncio.sleep(0)
    slow.gate.set()
    for _ in range(turns):  # the answer arrives before, with or after the cancellation
        await asyncio.sleep(0)
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    await quiet(limiter)
    counter = "rl:k1:r"
    held = limiter._leases.held[counter][0]
    if request.cancelled():
        assert total(table, counter) == held
    else:  # admitted before the cancellation reached it
        assert total(table, counter) == held + 1
    assert limiter._leases._timer is not None  # what is held goes back when the minute ends
    await limiter.close()  # and at shutdown
    assert total(table, counter) == (0 if request.cancelled() else 1)


class SlowerCoordinator(SlowCoordinator):
    async def add(self, key, amount, ttl):
        await asyncio.sleep(0.01)
        return await super().add(key, amount, ttl)


async def test_close_waits_for_trips_under_way_and_gives_everything_back():
    table, slow, limiter, key = one_slow_worker(SlowerCoordinator)
    slow.gate.set()
    for _ in range(18):  # past half of the lease: a top-up starts
        await limiter.admit(key, None, 0, now=T0)
    slow.gate.clear()  # ... and its answer is late
    await asyncio.sleep(0)
    assert limiter._leases._refills
    closing = asyncio.ensure_future(limiter.close())
    await asyncio.sleep(0.05)  # what was held has gone back; the top-up's answer has not come
    assert not closing.done()
    slow.gate.set()
    await closing
    assert total(table, "rl:k1:r") == 18


@pytest.mark.parametrize("seed", range(4))
async def test_workers_with_leases_keep_the_promise_under_random_concurrent_load(seed):
    """Three workers sharing one table, bursts of concurrent requests over four minutes of a
    fake clock, rpm and tpm of two keys and their customer, tokens settled lower: after
    every burst, no 60 seconds and no 61 buckets hold more than a limit."""
    rng = random.Random(seed)
    clock = Clock(T0)
    table, conns, limiters = workers(3, clock)
    keys = [make_key(1, rpm=rng.choice([20, 300, 5000]), tpm=rng.choice([3000, 200_000])),
            make_key(2, rpm=rng.choice([40, 100_000]), tpm=None)]
    customer = (rng.choice([50, 2000, None]), rng.choice([5000, 100_000]))
    logs = {"k1r": LimitLog(keys[0].rpm), "k1t": LimitLog(keys[0].tpm),
            "k2r": LimitLog(keys[1].rpm), "ct": LimitLog(customer[1])}
    if customer[0] is not None:
        logs["cr"] = LimitLog(customer[0])

    async def one(limiter, which: int, tokens: int):
        now = clock.now
        try:
            ticket = await limiter.admit(keys[which], customer, tokens)
        except RateLimited:
            return 0
        # Counted in its second, or in a newer one the window had seen when its trip came
        # (the clock moved on meanwhile): a moment between its arrival and its answer.
        assert int(now) <= ticket.second <= int(clock.now)
        now = max(now, ticket.second)
        mine = {f"k{which + 1}r": 1, "cr": 1, "ct": tokens}
        if which == 0:
            mine["k1t"] = tokens
        entries = {k: logs[k].add(now, ticket.second, amount)
                   for k, amount in mine.items() if k in logs}
        if tokens and rng.random() < 0.3:
            actual = rng.randrange(tokens + 1)
            await limiter.settle(ticket, actual)
            for k, e in entries.items():
                if k.endswith("t"):
                    e.amount = actual
        return 1

    async def tick(turns: int) -> int:
        """The clock moves on while a burst is under way: trips answered in a later second."""
        for _ in range(turns):
            await asyncio.sleep(0)
        clock.now += rng.choice([0.0, 0.1, 0.7])
        return 0

    windows = {"k1r": "rl:k1:r", "k1t": "rl:k1:t", "k2r": "rl:k2:r", "cr": "rl:c7:r",
               "ct": "rl:c7:t"}
    admitted = 0
    while clock.now < T0 + 240:
        second = int(clock.now)
        burst = [one(rng.choice(limiters), rng.randrange(2), rng.choice([0, 10, 200]))
                 for _ in range(rng.choice([1, 5, 40, 200]))]
        admitted += sum(await asyncio.gather(*burst, tick(rng.randrange(4))))
        for log in logs.values():
            log.check(since=second)
        clock.now += rng.choice([0.0, 0.001, 0.3, 0.999, 1.0, 3.0, 20.0])
        if int(clock.now) > second:  # some workers' timers fire: the second is over
            for limiter in limiters:
                if rng.random() < 0.5:
                    limiter._leases._expire(limiter._leases.second)
        await quiet(*limiters)
        # Every unit counted in a second was handed out in it or is still held for it: its
        # bucket holds exactly that, the unused units of leases of past seconds given back.
        for k, log in logs.items():
            window = table._windows.get(windows[k])
            counted = log.per_second(since=second - 60)
            for s in range(second - 60, int(clock.now) + 1):
                if window is not None and window.head - BUCKETS < s <= window.head:
                    held = sum(l._leases.held[windows[k]][0] for l in limiters
                               if l._leases.second == s and windows[k] in l._leases.held)
                    assert window.ring[s % BUCKETS] == held + counted.get(s, 0), (k, s)
    await asyncio.gather(*(l.close() for l in limiters))
    for log in logs.values():
        log.check()
    assert admitted > 100


class TimedCoordinator(Coordinator):
    """Each round trip takes ``delay`` seconds."""

    def __init__(self, table, workers, delay: float = 0.02):
        super().__init__(table, workers)
        self.delay = delay

    async def window_lease(self, items, second):
        await asyncio.sleep(self.delay)
        return await super().window_lease(items, second)


async def test_requests_of_a_second_that_has_ended_do_not_queue_behind_one_another():
    # At concurrency 256 behind Redis, requests whose second ended before they were admitted
    # each made a trip, one after another (one trip at a time for a set of windows): some
    # waited seconds (bench, JSON c=256: p99 6.5 s). Each now asks for itself at once.
    table = CounterTable()
    slow = TimedCoordinator(table, 1, delay=0.02)
    limiter, key = RateLimiter(slow, Clock()), make_key(rpm=100_000)
    await limiter.admit(key, None, 0, now=T0 + 1)  # the worker is in the next second now
    loop = asyncio.get_running_loop()
    started = loop.time()
    late = await asyncio.gather(*(limiter.admit(key, None, 0, now=T0) for _ in range(50)))
    took = loop.time() - started
    # counted in the window's buckets (a past second's own, or the newest's), none lost
    assert {t.second for t in late} <= {S0, S0 + 1}
    assert total(table, "rl:k1:r") - limiter._leases.held["rl:k1:r"][0] == 51
    assert took < 10 * slow.delay  # concurrent trips; one after another took 50 x 20 ms
    await quiet(limiter)
