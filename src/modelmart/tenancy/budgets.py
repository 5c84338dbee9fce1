"""Spend budgets per key: reserve the worst case before the upstream call, settle after.

One counter per key and budget window (a UTC day, a UTC month, or all time) holds the spend
plus the reservations in flight. The first use of a window in a process seeds the counter
from the ledger (set only if absent, so replicas and workers agree); after that the budget
check is one atomic ``try_add`` and never reads the store. Because every request reserves
before it runs, concurrent requests cannot overspend: a request is admitted only if its
whole worst case fits, and settling replaces the reservation with the actual price.

Budgets are never leased. While Redis is down (``fallback.py``) each replica seeds its own
counter from the ledger and admits what was left divided by the replicas that shared it;
a reservation is settled on the backend it was made on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from modelmart.core.errors import PaymentRequired
from modelmart.core.money import format_usd
from modelmart.store.errors import StoreError, StoreUnavailable
from modelmart.store.records import ApiKey

from .fallback import DOWN, FallbackCounters

DAY = 86400.0
# A counter outlives its window by this much, so requests settling just after midnight
# still find it; "total" counters expire only after this long without any write, and are
# then re-seeded from the ledger, which by then holds every settled request.
EXPIRY_SLACK = 7 * DAY
PERIOD_WORDS = {"day": "daily", "month": "monthly", "total": "total"}


@dataclass(slots=True, frozen=True)
class BudgetWindow:
    period: str
    label: str  # "2025-11-25", "2025-11" or "total": part of the counter key
    start: float | None  # epoch seconds; None for "total"
    end: float | None

    def ttl(self, now: float) -> float:
        return (self.end - now if self.end is not None else 0.0) + EXPIRY_SLACK


def budget_window(period: str, now: float) -> BudgetWindow:
    moment = datetime.fromtimestamp(now, timezone.utc)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
        return BudgetWindow(period, start.strftime("%Y-%m-%d"), start.timestamp(), end.timestamp())
    if period == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        return BudgetWindow(period, start.strftime("%Y-%m"), start.timestamp(), end.timestamp())
    if period == "total":
        return BudgetWindow(period, "total", None, None)
    raise ValueError(f"unknown budget period {period!r}; expected day, month or total")


@dataclass(slots=True)
class Reservation:
    key_id: int
    counter: str
    reserved_pico: int
    ttl: float
    counters: object = None  # the backend it was made on, when that may change


@dataclass(slots=True)
class _Seeding:
    counter: str
    task: asyncio.Task
    trusted_until: float  # monotonic; past it the counter may have expired, so seed again
    epoch: int = 0  # the fallback's: a switch of backend seeds again
    spent: int = 0  # what the ledger said
    done: bool = False  # the fast path: no await at all once seeded


class Budgets:
    def __init__(self, counters, store) -> None:
        self._counters = counters
        self._store = store
        self._seeded: dict[int, _Seeding] = {}  # by key id: only the current window matters
        self._fallback = counters if isinstance(counters, FallbackCounters) else None

    async def reserve(self, key: ApiKey, amount_pico: int,
                      now: float | None = None) -> Reservation | None:
        if key.budget_pico is None:
            return None
        now = time.time() if now is None else now
        window = budget_window(key.budget_period or "total", now)
        counter = f"budget:{key.id}:{window.label}"
        ttl = window.ttl(now)
        fallback = self._fallback
        if fallback is None:
            counters, limit = self._counters, key.budget_pico
            await self._ensure_seeded(key.id, counter, window.start, ttl, counters)
            admitted, value = await counters.try_add(counter, amount_pico, limit, ttl)
        else:
            counters, admitted, value = await self._reserve_shared(
                key, counter, window.start, ttl, amount_pico)
        if not admitted:
            raise _exhausted(key, window, value, now)
        self._trust(key.id, counter, ttl)
        return Reservation(key.id, counter, amount_pico, ttl, counters)

    async def _reserve_shared(self, key: ApiKey, counter: str, since: float | None,
                              ttl: float, amount: int) -> tuple[object, bool, int]:
        """In Redis; while it is down, in this replica's counter, seeded from the ledger,
        within its share of what was left."""
        fallback = self._fallback
        if fallback.local is None:
            try:
                await self._ensure_seeded(key.id, counter, since, ttl, fallback.primary)
                return (fallback.primary,
                        *await fallback.primary.try_add(counter, amount, key.budget_pico, ttl))
            except DOWN as exc:
                fallback.fail(exc)
        local = fallback.local
        spent = await self._ensure_seeded(key.id, counter, since, ttl, local)
        share = spent + fallback.share_of(max(0, key.budget_pico - spent))
        admitted, value = await local.try_add(counter, amount, min(share, key.budget_pico), ttl)
        return local, admitted, value

    async def settle(self, reservation: Reservation | None, actual_pico: int) -> None:
        """Replace the reservation by the actual price (0 releases it entirely)."""
        if reservation is None or actual_pico == reservation.reserved_pico:
            return
        counters = reservation.counters or self._counters
        try:
            await counters.add(reservation.counter, actual_pico - reservation.reserved_pico,
                               reservation.ttl)
        except DOWN as exc:
            if self._fallback is None:
                raise
            # Reserved in Redis, which is gone: the reservation stays (conservative).
            self._fallback.fail(exc)
            return
        self._trust(reservation.key_id, reservation.counter, reservation.ttl)

    async def _ensure_seeded(self, key_id: int, counter: str, since: float | None,
                             ttl: float, counters) -> int:
        """Seed the counter from the ledger once per window (and backend); returns what the
        ledger said was spent."""
        seeding = self._seeded.get(key_id)
        epoch = self._fallback.epoch if self._fallback is not None else 0
        current = (seeding is not None and seeding.counter == counter
                   and seeding.epoch == epoch and seeding.trusted_until >= time.monotonic())
        if current and seeding.done:
            return seeding.spent
        if not current:
            # Concurrent first requests share one task: one ledger read per key and window.
            task = asyncio.ensure_future(self._seed(key_id, counter, since, ttl, counters))
            seeding = _Seeding(counter, task, time.monotonic() + ttl / 2, epoch)
            self._seeded[key_id] = seeding
        try:
            # Shielded: a cancelled request must not cancel the seeding others wait for.
            seeding.spent = await asyncio.shield(seeding.task)
            seeding.done = True
        except Exception:
            if self._seeded.get(key_id) is seeding:
                del self._seeded[key_id]  # let the next request try the ledger again
            raise
        return seeding.spent

    async def _seed(self, key_id: int, counter: str, since: float | None, ttl: float,
                    counters) -> int:
        try:
            spent = await self._store.spent(key_id=key_id, since=since)
        except StoreError:
            raise
        except Exception as exc:  # not the counters' failure: never a reason to fall back
            raise StoreUnavailable(f"cannot read the ledger to check a budget: "
                                   f"{type(exc).__name__}: {exc}") from exc
        await counters.seed(counter, spent, ttl)
        return spent

    def _trust(self, key_id: int, counter: str, ttl: float) -> None:
        # A write restarted the counter's expiry, so it cannot vanish for another ttl;
        # half of that leaves room for clock differences with the counter's backend.
        seeding = self._seeded.get(key_id)
        if seeding is not None and seeding.counter == counter:
            seeding.trusted_until = time.monotonic() + ttl / 2


def _exhausted(key: ApiKey, window: BudgetWindow, used: int, now: float) -> PaymentRequired:
    message = (f"budget exhausted: key {key.prefix} has a {PERIOD_WORDS[window.period]} budget "
               f"of ${format_usd(key.budget_pico, 6)} and ${format_usd(used, 6)} is spent "
               f"or reserved")
    retry_after = round(window.end - now, 3) if window.end is not None else None
    return PaymentRequired(message, retry_after=retry_after)
