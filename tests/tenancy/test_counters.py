"""One suite, every backend: memory, redis and the coordinator (see the ``counters`` fixture)."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from modelmart.tenancy.coordinator import CoordinatorCounters, start_coordinator
from modelmart.tenancy.counters import BUCKETS


async def test_try_add_is_atomic_under_200_concurrent_tasks(counters, name):
    results = await asyncio.gather(*(counters.try_add(name, 1, 50, 60) for _ in range(200)))
    admitted = sorted(value for ok, value in results if ok)
    assert admitted == list(range(1, 51))  # every admitted add saw a distinct count
    assert all(value == 50 for ok, value in results if not ok)
    assert await counters.get(name) == 50


async def test_try_add_admits_up_to_the_limit_and_refusal_changes_nothing(counters, name):
    assert await counters.try_add(name, 30, 100, 60) == (True, 30)
    assert await counters.try_add(name, 70, 100, 60) == (True, 100)
    assert await counters.try_add(name, 1, 100, 60) == (False, 100)
    assert await counters.try_add(name + "x", 10, 5, 60) == (False, 0)
    assert await counters.get(name) == 100
    assert await counters.get(name + "x") == 0


async def test_add_is_unconditional_and_may_be_negative(counters, name):
    assert await counters.get(name) == 0
    assert await counters.add(name, 5, 60) == 5
    assert await counters.add(name, -3, 60) == 2
    assert await counters.add(name, -10, 60) == -8
    assert await counters.get(name) == -8


async def test_values_are_exact_beyond_float_precision(counters, name):
    base = 2**62  # picodollar sums this large lose their last digits in a double
    await counters.seed(name, base, 60)
    assert await counters.try_add(name, 1, base + 1, 60) == (True, base + 1)
    assert await counters.try_add(name, 1, base + 1, 60) == (False, base + 1)
    assert await counters.add(name, -(base + 1), 60) == 0


async def test_negative_counts_compare_correctly(counters, name):
    await counters.add(name, -5, 60)
    assert await counters.try_add(name, 3, -1, 60) == (True, -2)
    assert await counters.try_add(name, 3, -1, 60) == (False, -2)
    assert await counters.try_add(name, 1, -1, 60) == (True, -1)


async def test_counters_expire_after_their_ttl(counters, name):
    await counters.add(name, 5, 0.2)
    assert await counters.get(name) == 5
    await asyncio.sleep(0.35)
    assert await counters.get(name) == 0
    assert await counters.try_add(name, 1, 1, 0.2) == (True, 1)


async def test_a_write_restarts_the_ttl(counters, name):
    await counters.add(name, 1, 0.5)
    await asyncio.sleep(0.3)
    await counters.try_add(name, 1, 10, 0.5)
    await asyncio.sleep(0.3)
    assert await counters.get(name) == 2  # 0.6 s after the first write, 0.3 after the last


async def test_seed_sets_only_if_absent(counters, name):
    await counters.seed(name, 7, 0.3)
    assert await counters.get(name) == 7
    await counters.seed(name, 100, 0.3)
    assert await counters.get(name) == 7
    assert await counters.add(name, 1, 0.3) == 8
    await asyncio.sleep(0.45)
    await counters.seed(name, 100, 60)  # expired, so absent again
    assert await counters.get(name) == 100


async def test_coordinator_reports_bad_requests_and_keeps_serving(coordinator_socket, name):
    client = CoordinatorCounters(coordinator_socket)
    with pytest.raises(RuntimeError, match="coordinator"):
        await client._call("nonsense", name)
    with pytest.raises(RuntimeError, match="TypeError"):
        await client._call("t", name, 1)  # missing arguments
    assert await client.add(name, 2, 60) == 2
    await client.close()


async def test_coordinator_client_reconnects_after_a_restart(tmp_path_factory, name):
    path = f"{tmp_path_factory.mktemp('c')}/c.sock"
    if len(path) > 100:
        path = f"/tmp/mm-{name}.sock"
    handle = start_coordinator(path)
    client = CoordinatorCounters(path)
    assert await client.add(name, 3, 60) == 3
    handle.stop()
    with pytest.raises((ConnectionError, OSError)):
        await client.get(name)
    handle = start_coordinator(path)
    try:
        assert await client.get(name) == 0  # a new coordinator starts empty
        assert await client.add(name, 1, 60) == 1
    finally:
        await client.close()
        handle.stop()


async def test_a_coordinator_that_stops_answering_fails_requests_in_time(name):
    path = f"/tmp/mm-{name}.sock"
    silent = await asyncio.start_unix_server(lambda r, w: asyncio.sleep(10), path)
    client = CoordinatorCounters(path, timeout=0.2)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await client.get(name)
        assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await client.close()
        silent.close()
        os.unlink(path)


async def test_coordinator_drops_a_client_that_sends_garbage(coordinator_socket, name):
    reader, writer = await asyncio.open_unix_connection(coordinator_socket)
    writer.write(b'[1, "g", "' + name.encode() + b'"]\nnot json\n[2, "g", "x"]\n')
    assert await reader.readline() == b"[1,0]\n"
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing more answered
    writer.close()


# ---- windows: one-second buckets of the last 61 seconds -------------------------------

S = 1_700_000_000  # a second


async def test_a_window_admits_up_to_its_limit_in_61_seconds_and_no_more(counters, name):
    assert await counters.window_admit([(name, 6, 10)], S) == [True, S, [6], [S + 61], S]
    assert await counters.window_admit([(name, 4, 10)], S + 30) == [True, S + 30, [10],
                                                                    [S + 91], S + 30]
    # Full until the first bucket leaves: the 6 of second S count through second S + 60.
    assert await counters.window_admit([(name, 1, 10)], S + 60) == [False, S + 60, [10],
                                                                    [S + 91], S + 61]
    assert await counters.window_admit([(name, 6, 10)], S + 61) == [True, S + 61, [10],
                                                                    [S + 122], S + 61]
    assert await counters.window_admit([(name, 1, 10)], S + 61) == [False, S + 61, [10],
                                                                    [S + 122], S + 91]
    # A request larger than the limit never fits; a request of 0 always does.
    assert (await counters.window_admit([(name, 11, 10)], S + 61))[::4] == [False, -1]
    assert (await counters.window_admit([(name, 0, 10)], S + 61))[0] is True


async def test_a_refusal_says_when_the_request_would_fit(counters, name):
    await counters.window_admit([(name, 3, 10)], S)
    await counters.window_admit([(name, 4, 10)], S + 10)
    await counters.window_admit([(name, 2, 10)], S + 20)
    # 9 counted: 5 fits once 4 have left (S's 3 and S+10's 4): at S + 71.
    assert await counters.window_admit([(name, 5, 10)], S + 30) == [False, S + 30, [9],
                                                                    [S + 81], S + 71]
    assert (await counters.window_admit([(name, 4, 10)], S + 30))[4] == S + 61
    assert (await counters.window_admit([(name, 5, 10)], S + 71))[0] is True


async def test_window_admit_is_all_or_nothing_and_fits_when_all_fit(counters, name):
    a, b = name + "a", name + "b"
    assert (await counters.window_admit([(a, 1, 3), (b, 10, 20)], S))[:3] == [True, S, [1, 10]]
    assert (await counters.window_admit([(a, 1, 3), (b, 10, 20)], S + 5))[:3] == \
        [True, S + 5, [2, 20]]
    # b is full: a must not move either; it fits when S's 10 tokens leave b.
    assert await counters.window_admit([(a, 1, 3), (b, 10, 20)], S + 6) == \
        [False, S + 6, [2, 20], [S + 66, S + 66], S + 61]
    assert (await counters.window_admit([(a, 1, 3), (b, 0, 20)], S + 6))[:3] == \
        [True, S + 6, [3, 20]]
    # Never: one item can never fit, however long the other waits.
    assert (await counters.window_admit([(a, 1, 3), (b, 21, 20)], S + 6))[4] == -1


async def test_seconds_never_go_back_in_a_window(counters, name):
    a, b = name + "a", name + "b"
    await counters.window_admit([(a, 5, 10)], S + 100)
    # A request that read second S + 99 but arrives after one of S + 100 counts in S + 100,
    # in every window it touches.
    assert (await counters.window_admit([(b, 1, 10), (a, 1, 10)], S + 99))[:3] == \
        [True, S + 100, [1, 6]]
    assert (await counters.window_admit([(b, 1, 10)], S + 99))[1] == S + 100


async def test_window_add_corrects_a_bucket_while_it_is_in_the_window(counters, name):
    await counters.window_admit([(name, 8, 10)], S)
    await counters.window_add(name, S, -5)  # a settled estimate: 3 left in S
    assert (await counters.window_admit([(name, 7, 10)], S + 60))[:3] == [True, S + 60, [10]]
    # S left the window at S + 61: only the 7 count, and a late correction to S is dropped.
    await counters.window_add(name, S, -3)
    assert (await counters.window_admit([(name, 3, 10)], S + 61))[:3] == [True, S + 61, [10]]
    await counters.window_add(name, S + 60, 2)  # counted more than estimated
    assert (await counters.window_admit([(name, 0, 10)], S + 61))[2] == [12]
    await counters.window_add(name + "x", S, 5)  # no such window: nothing to correct
    assert (await counters.window_admit([(name + "x", 10, 10)], S))[0] is True


async def test_window_admit_is_atomic_under_200_concurrent_tasks(counters, name):
    items = [(name + "r", 1, 30), (name + "t", 7, 7 * 100)]
    results = await asyncio.gather(*(counters.window_admit(items, S) for _ in range(200)))
    assert sum(v[0] for v in results) == 30
    assert sorted(v[2][0] for v in results if v[0]) == list(range(1, 31))
    assert all(v[2] == [30, 210] and v[4] == S + 61 for v in results if not v[0])


class ReferenceWindows:
    """The specification, the slow way: every bucket kept, sums taken afresh."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[int, int]] = {}
        self.head: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def total(self, name: str, at: int, since: int | None = None) -> int:
        """The buckets of the window at ``at`` (from ``since`` on, if given)."""
        since = at - 60 if since is None else max(since, at - 60)
        return sum(v for s, v in self.buckets.get(name, {}).items() if since <= s <= at)

    def clear_at(self, name: str, at: int) -> int:
        return self.last[name] + BUCKETS if self.total(name, at) > 0 else 0

    def fits_at(self, name: str, at: int, amount: int, limit: int) -> int:
        if amount > limit:
            return -1
        return next(s for s in range(at, at + BUCKETS + 1)
                    if self.total(name, at, since=s - 60) + amount <= limit)

    def admit(self, items, second: int) -> list:
        at = max([second] + [self.head.get(n, second) for n, _, _ in items])
        for n, _, _ in items:
            self.head[n] = at
            self.last.setdefault(n, -1)
        totals = [self.total(n, at) for n, _, _ in items]
        if all(t + a <= lim for t, (_, a, lim) in zip(totals, items)):
            for n, a, _ in items:
                bucket = self.buckets.setdefault(n, {})
                bucket[at] = bucket.get(at, 0) + a
                if a > 0:
                    self.last[n] = at
            return [True, at, [self.total(n, at) for n, _, _ in items],
                    [self.clear_at(n, at) for n, _, _ in items], at]
        fits = [self.fits_at(n, at, a, lim) for n, a, lim in items]
        return [False, at, totals, [self.clear_at(n, at) for n, _, _ in items],
                -1 if -1 in fits else max(fits)]

    def add(self, name: str, second: int, delta: int) -> None:
        head = self.head.get(name)
        if head is not None and head - 60 <= second <= head:
            bucket = self.buckets.setdefault(name, {})
            bucket[second] = bucket.get(second, 0) + delta
            if delta > 0:
                self.last[name] = max(self.last[name], second)


@pytest.mark.parametrize("seed", range(3))
async def test_windows_behave_like_the_reference_under_random_use(counters, name, seed):
    rng = random.Random(seed)
    reference = ReferenceWindows()
    names = [f"{name}{i}" for i in range(3)]
    second = S
    for _ in range(400):
        second += rng.choice([0, 0, 0, 1, 1, 2, 5, 30, 59, 60, 61, 62, 200])
        if rng.random() < 0.2:
            n, s = rng.choice(names), second - rng.randrange(70)
            delta = rng.randrange(-5, 6)
            reference.add(n, s, delta)
            await counters.window_add(n, s, delta)
            continue
        chosen = rng.sample(names, rng.randrange(1, 4))
        items = [(n, rng.randrange(0, 12), rng.choice([5, 10, 40])) for n in chosen]
        late = second - rng.choice([0, 0, 0, 1, 3])  # a request that read the clock earlier
        assert await counters.window_admit(items, late) == reference.admit(items, late)
