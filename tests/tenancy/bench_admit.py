"""CPU per rate-limit admission, in-process counters against Redis with and without leases
(not a test; speed is never asserted). Needs a redis-server at the given URL.

    PYTHONPATH=src:. python -m tests.tenancy.bench_admit redis://127.0.0.1:6379/0

16 tasks admit 2,000 requests each for one key with an rpm of a million, on uvloop; CPU is
process time (the Redis server's own is not counted).
"""

from __future__ import annotations

import asyncio
import sys
import time

from modelmart.store.records import ApiKey
from modelmart.tenancy.counters import MemoryCounters, make_counters
from modelmart.tenancy.limits import RateLimiter


async def _run(kind: str, url: str) -> str:
    if kind == "memory":
        counters = MemoryCounters()
    else:
        counters = make_counters(url, None, redis_leases=kind == "redis-leases")
        await counters.start()
    limiter = RateLimiter(counters)
    key = ApiKey(id=int(time.time() * 1000) % 10**9, customer_id=2, prefix="mm-bench00",
                 secret_hash="h", created_at=0, rpm=1_000_000)

    async def client(n: int) -> None:
        for _ in range(n):
            await limiter.admit(key, None, 100)
            await asyncio.sleep(0)

    await asyncio.gather(*(client(200) for _ in range(16)))  # warm: the leases grow
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(2000) for _ in range(16)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await limiter.close()
    await counters.close()
    return f"{kind}: {cpu / 32000 * 1e6:.1f} us CPU per admission, {32000 / wall:.0f}/s"


def main() -> None:
    import uvloop

    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    for kind in ("memory", "redis-leases", "redis-exact"):
        print(uvloop.run(_run(kind, url)))


if __name__ == "__main__":
    main()
