"""Rate-limit admission in two worker processes sharing a coordinator (not a test; speed is
never asserted): CPU per admission in each worker and round trips to the coordinator.

    PYTHONPATH=src:. python -m tests.tenancy.bench_leases [requests] [concurrency]

The coordinator runs in a process of its own, as under ``serve --workers``; each worker
admits ``requests`` requests, ``concurrency`` at a time, for one key with an rpm limit of a
million (the bench's key). CPU is process time, so other load on the machine matters less
than wall-clock figures would.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

from modelmart.store.records import ApiKey
from modelmart.tenancy.coordinator import CoordinatorCounters
from modelmart.tenancy.limits import RateLimiter


class _Counting:
    """The counters, counting the calls that go to the coordinator."""

    def __init__(self, counters) -> None:
        self._counters, self.calls = counters, 0

    def __getattr__(self, name):
        method = getattr(self._counters, name)

        async def call(*args, **kwargs):
            self.calls += 1
            return await method(*args, **kwargs)

        return call


async def _worker(path: str, requests: int, concurrency: int) -> tuple[float, int, float]:
    counters = _Counting(CoordinatorCounters(path))
    limiter = RateLimiter(counters)
    key = ApiKey(id=1, customer_id=2, prefix="mm-bench00", secret_hash="h", created_at=0,
                 rpm=1_000_000)
    await counters.get("warm-up")
    for _ in range(200):
        await limiter.admit(key, None, 100)
    counters.calls = 0

    async def client(n: int) -> None:
        for _ in range(n):
            await limiter.admit(key, None, 100)
            await asyncio.sleep(0)  # the rest of a request: the loop turns

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await limiter.close()
    return cpu / requests * 1e6, counters.calls, requests / wall


def _run(path: str, requests: int, concurrency: int, barrier, results) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    barrier.wait()
    results.put(asyncio.run(_worker(path, requests, concurrency)))


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    workdir = tempfile.mkdtemp(prefix="mm-bench-")
    path = f"{workdir}/c.sock"
    coordinator = subprocess.Popen([sys.executable, "-m", "modelmart.tenancy.coordinator", path])
    try:
        while not os.path.exists(path):
            time.sleep(0.05)
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_run,
                                   args=(path, requests, concurrency, barrier, results))
                   for _ in range(2)]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=300) for _ in workers]
        for w in workers:
            w.join()
        for cpu, calls, rate in outcomes:
            print(f"worker: {cpu:5.1f} µs CPU an admission, {calls / requests * 1000:6.1f} "
                  f"coordinator calls per 1,000, {rate:8.0f} admissions/s")
    finally:
        coordinator.terminate()
        coordinator.wait()


if __name__ == "__main__":
    main()
