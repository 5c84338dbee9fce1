"""A worker process for the cross-process tests, started the way uvicorn starts its workers
(multiprocessing 'spawn'): it builds its own counters from the address it is given."""

from __future__ import annotations

import asyncio

from modelmart.core.errors import PaymentRequired, RateLimited
from modelmart.store.records import ApiKey
from modelmart.tenancy.budgets import Budgets
from modelmart.tenancy.counters import make_counters
from modelmart.tenancy.limits import RateLimiter


class _EmptyLedger:
    async def spent(self, key_id=None, customer_id=None, since=None) -> int:
        return 0


def run(kind: str, address: str, key_id: int, now: float, attempts: int, barrier, results) -> None:
    results.put(asyncio.run(_hammer(kind, address, key_id, now, attempts, barrier)))


async def _hammer(kind, address, key_id, now, attempts, barrier) -> tuple[int, int, int]:
    counters = make_counters(address if kind == "redis" else None,
                             address if kind == "coordinator" else None)
    limiter, budgets = RateLimiter(counters), Budgets(counters, _EmptyLedger())
    key = ApiKey(id=key_id, customer_id=None, prefix="mm-xproc00", secret_hash="h",
                 created_at=0.0, rpm=20, budget_pico=15, budget_period="month")
    await counters.get("warm-up")  # connect before the race starts
    barrier.wait()
    admitted = await _count(lambda: limiter.admit(key, None, 0, now=now), RateLimited, attempts)
    reserved = await _count(lambda: budgets.reserve(key, 1, now=now), PaymentRequired, attempts)
    await counters.close()
    return admitted, reserved, attempts


async def _count(attempt, refusal, n: int) -> int:
    results = await asyncio.gather(*(attempt() for _ in range(n)), return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, refusal)]
    if unexpected:
        raise unexpected[0]
    return sum(not isinstance(r, Exception) for r in results)


def run_schedule(kind: str, address: str, key_id: int, times: list[float], burst: int,
                 barrier, results) -> None:
    """Bursts of ``burst`` concurrent requests at each of ``times`` (a fake clock, so that
    minutes pass in a moment): what was admitted, as (time, second) pairs."""
    results.put(asyncio.run(_schedule(kind, address, key_id, times, burst, barrier)))


async def _schedule(kind, address, key_id, times, burst, barrier) -> list[tuple[float, int]]:
    from tests.tenancy.promise import Clock

    counters = make_counters(address if kind == "redis" else None,
                             address if kind == "coordinator" else None)
    clock = Clock(times[0])
    limiter = RateLimiter(counters, clock)
    key = ApiKey(id=key_id, customer_id=None, prefix="mm-xproc01", secret_hash="h",
                 created_at=0.0, rpm=300)
    await counters.get("warm-up")
    barrier.wait()
    admitted = []

    async def one() -> None:
        now = clock.now
        try:
            ticket = await limiter.admit(key, None, 0)
        except RateLimited:
            return
        admitted.append((max(now, ticket.second), ticket.second))

    for now in times:
        clock.now = now
        await asyncio.gather(*(one() for _ in range(burst)))
    await limiter.close()
    await counters.close()
    return admitted
