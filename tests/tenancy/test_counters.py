"""One suite, every backend: memory, redis and the coordinator (see the ``counters`` fixture)."""

from __future__ import annotations

import asyncio
import os

import pytest

from modelmart.tenancy.coordinator import CoordinatorCounters, start_coordinator


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


async def test_try_add_all_is_all_or_nothing(counters, name):
    a, b = name + "a", name + "b"
    assert await counters.try_add_all([(a, 1, 3), (b, 10, 20)], 60) == (True, [1, 10])
    assert await counters.try_add_all([(a, 1, 3), (b, 10, 20)], 60) == (True, [2, 20])
    # b is full: a must not move either.
    assert await counters.try_add_all([(a, 1, 3), (b, 10, 20)], 60) == (False, [2, 20])
    assert await counters.get(a) == 2
    assert await counters.try_add_all([(a, 1, 3), (b, 0, 20)], 60) == (True, [3, 20])


async def test_try_add_all_is_atomic_under_200_concurrent_tasks(counters, name):
    items = [(name + "r", 1, 30), (name + "t", 7, 7 * 100)]
    results = await asyncio.gather(*(counters.try_add_all(items, 60) for _ in range(200)))
    assert sum(ok for ok, _ in results) == 30
    assert sorted(values[0] for ok, values in results if ok) == list(range(1, 31))
    assert await counters.get(name + "t") == 7 * 30


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
