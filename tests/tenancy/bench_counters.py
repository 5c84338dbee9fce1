"""Microseconds per counter operation on each backend (not a test; speed is never asserted).

    PYTHONPATH=src:. python -m tests.tenancy.bench_counters

Starts its own redis-server and coordinator. "sequential" is one caller awaiting each
operation (latency); "concurrent" is 100 callers at once (throughput per operation).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time

from modelmart.store.records import ApiKey
from modelmart.tenancy.budgets import Budgets
from modelmart.tenancy.coordinator import CoordinatorCounters, start_coordinator
from modelmart.tenancy.counters import MemoryCounters, RedisCounters
from modelmart.tenancy.limits import RateLimiter
from tests.redis_server import redis_server

N = 20_000


class _Ledger:
    async def spent(self, **_) -> int:
        return 0


async def _per_op(make_call, n: int, concurrency: int) -> float:
    async def worker(count: int) -> None:
        for i in range(count):
            await make_call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return (time.perf_counter() - start) / n * 1e6


async def _bench(label: str, counters) -> None:
    key = ApiKey(id=1, customer_id=2, prefix="mm-bench00", secret_hash="h", created_at=0,
                 rpm=10**9, tpm=10**12, budget_pico=10**18, budget_period="month")
    limiter, budgets = RateLimiter(counters), Budgets(counters, _Ledger())
    calls = {
        "try_add": lambda i: counters.try_add("bench", 1, 10**15, 60),
        "get": lambda i: counters.get("bench"),
        "window_admit (one limit)": lambda i: counters.window_admit(
            [("bench-w", 1, 10**15)], int(time.time())),
        "admit (key+customer rpm/tpm)": lambda i: limiter.admit(key, (10**9, 10**12), 100),
        "budget reserve": lambda i: budgets.reserve(key, 1000),
    }
    await counters.get("warm-up")
    for name, call in calls.items():
        sequential = await _per_op(call, N // 4, 1)
        concurrent = await _per_op(call, N, 100)
        print(f"{label:12} {name:30} sequential {sequential:7.1f} µs/op   "
              f"concurrent {concurrent:7.1f} µs/op")
    await counters.close()


async def main(redis_url: str, socket_path: str) -> None:
    await _bench("memory", MemoryCounters())
    await _bench("coordinator", CoordinatorCounters(socket_path))
    await _bench("redis", RedisCounters(redis_url))


if __name__ == "__main__":
    workdir = tempfile.mkdtemp(prefix="mm-bench-")
    coordinator = start_coordinator(f"{workdir}/c.sock")
    try:
        with redis_server() as url:
            try:
                import uvloop
                uvloop.install()
            except ImportError:
                pass
            asyncio.run(main(url, coordinator.socket_path))
    finally:
        coordinator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
