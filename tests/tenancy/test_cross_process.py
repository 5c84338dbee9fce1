"""Two worker processes sharing redis, or the coordinator, hold one limit together."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest

from tests.tenancy import xproc
from tests.tenancy.promise import LimitLog


@pytest.mark.parametrize("kind", ["redis", "coordinator"])
def test_two_processes_share_one_rate_limit_and_one_budget(kind, request):
    address = request.getfixturevalue("redis_url" if kind == "redis" else "coordinator_socket")
    context = multiprocessing.get_context("spawn")  # what uvicorn uses for --workers
    barrier, results = context.Barrier(2), context.Queue()
    key_id = uuid.uuid4().int % 10**12
    workers = [context.Process(target=xproc.run,
                               args=(kind, address, key_id, time.time(), 20, barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    assert [attempts for _, _, attempts in outcomes] == [20, 20]
    assert sum(admitted for admitted, _, _ in outcomes) == 20  # rpm 20, 40 attempts
    assert sum(reserved for _, reserved, _ in outcomes) == 15  # budget 15, 40 reservations


@pytest.mark.parametrize("kind", ["redis", "coordinator"])
def test_two_processes_keep_the_promise_over_minutes(kind, request):
    """Two worker processes (leasing, on the coordinator) send bursts at the same fake
    times over three minutes, each at its own pace: no 60 seconds and no 61 buckets of what
    both admitted hold more than the limit (rpm 300), and the limit is used."""
    address = request.getfixturevalue("redis_url" if kind == "redis" else "coordinator_socket")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    key_id = uuid.uuid4().int % 10**12
    start = 1_700_000_000.5
    times = [start + i * 0.25 for i in range(720)]  # three minutes, every 250 ms
    workers = [context.Process(target=xproc.run_schedule,
                               args=(kind, address, key_id, times, 4, barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    log = LimitLog(300)
    for admitted in outcomes:
        for time_, second in admitted:
            log.add(time_, second, 1)
    log.check()
    assert all(outcomes)  # both processes were admitted some
    assert len(log.admitted) >= 3 * 300 * 0.9  # three windows' worth, give or take leases
