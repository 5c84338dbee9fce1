"""Spend budgets: reservations against a counter seeded once from the ledger."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import pytest

from modelmart.core.errors import PaymentRequired
from modelmart.core.money import usd_to_pico
from modelmart.store.errors import StoreUnavailable
from modelmart.store.records import ApiKey
from modelmart.tenancy.budgets import Budgets, budget_window
from modelmart.tenancy.counters import MemoryCounters

UNIT = 10**6  # one "unit" of spend in picodollars
NOW = datetime(2025, 3, 15, 12, 0, tzinfo=timezone.utc).timestamp()


def make_key(key_id: int, budget: int | None, period: str | None = "month") -> ApiKey:
    return ApiKey(id=key_id, customer_id=1, prefix=f"mm-bud{key_id:04d}", secret_hash="h",
                  created_at=0.0, budget_pico=budget, budget_period=period)


async def reserve_all(budgets, key, n, amount, now=NOW):
    results = await asyncio.gather(*(budgets.reserve(key, amount, now=now) for _ in range(n)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, PaymentRequired) for r in refused), refused
    return [r for r in results if not isinstance(r, Exception)]


async def test_50_concurrent_reserves_admit_exactly_what_fits(counters, store):
    key_id = uuid.uuid4().int % 10**12  # redis and the coordinator outlive a test
    store.ledger.append((key_id, NOW - 3600, 5 * UNIT))
    budgets = Budgets(counters, store)
    admitted = await reserve_all(budgets, make_key(key_id, 15 * UNIT), 50, UNIT)
    assert len(admitted) == 10
    assert store.calls["spent"] == 1


async def test_refusal_says_which_budget(store):
    key = make_key(1, usd_to_pico("5"))
    store.ledger.append((1, NOW - 60, usd_to_pico("4.99")))
    budgets = Budgets(MemoryCounters(), store)
    with pytest.raises(PaymentRequired) as caught:
        await budgets.reserve(key, usd_to_pico("0.02"), now=NOW)
    assert caught.value.status == 402
    assert caught.value.message == ("budget exhausted: key mm-bud0001 has a monthly budget of "
                                    "$5.000000 and $4.990000 is spent or reserved")
    until_april = datetime(2025, 4, 1, tzinfo=timezone.utc).timestamp() - NOW
    assert caught.value.retry_after == pytest.approx(until_april)
    assert await budgets.reserve(key, usd_to_pico("0.01"), now=NOW) is not None


async def test_settle_replaces_the_reservation_with_the_actual_price(store):
    counters = MemoryCounters()
    budgets = Budgets(counters, store)
    key = make_key(1, 100 * UNIT)
    reservation = await budgets.reserve(key, 60 * UNIT, now=NOW)
    with pytest.raises(PaymentRequired):
        await budgets.reserve(key, 60 * UNIT, now=NOW)
    await budgets.settle(reservation, 20 * UNIT)
    assert await counters.get(reservation.counter) == 20 * UNIT
    second = await budgets.reserve(key, 80 * UNIT, now=NOW)
    await budgets.settle(second, 0)  # a failed request releases its reservation
    third = await budgets.reserve(key, 80 * UNIT, now=NOW)
    await budgets.settle(third, 85 * UNIT)  # actual above the reservation is still counted
    assert await counters.get(reservation.counter) == 105 * UNIT
    with pytest.raises(PaymentRequired, match=r"\$0.000105 is spent"):
        await budgets.reserve(key, 1, now=NOW)


async def test_daily_budget_rolls_over_at_utc_midnight(store):
    budgets = Budgets(MemoryCounters(), store)
    key = make_key(1, 10 * UNIT, "day")
    await budgets.reserve(key, 10 * UNIT, now=NOW)
    with pytest.raises(PaymentRequired, match="daily budget") as caught:
        await budgets.reserve(key, 1, now=NOW)
    assert caught.value.retry_after == pytest.approx(12 * 3600)
    assert await budgets.reserve(key, 10 * UNIT, now=NOW + 12 * 3600) is not None
    assert store.calls["spent"] == 2  # one seed per day


async def test_monthly_budget_seeds_only_from_this_months_ledger(store):
    feb_end = datetime(2025, 2, 28, 23, 59, tzinfo=timezone.utc).timestamp()
    march_first = datetime(2025, 3, 1, 0, 1, tzinfo=timezone.utc).timestamp()
    store.ledger += [(1, feb_end, 8 * UNIT), (1, march_first, 3 * UNIT), (2, NOW, 9 * UNIT)]
    budgets = Budgets(MemoryCounters(), store)
    key = make_key(1, 10 * UNIT)
    await budgets.reserve(key, 7 * UNIT, now=NOW)  # 3 spent in March + 7 = 10
    with pytest.raises(PaymentRequired, match=r"\$0.000010 is spent"):
        await budgets.reserve(key, 1, now=NOW)


async def test_total_budget_counts_the_whole_ledger(store):
    store.ledger += [(1, 0.0, 4 * UNIT), (1, NOW - 400 * 86400, 4 * UNIT)]
    budgets = Budgets(MemoryCounters(), store)
    key = make_key(1, 10 * UNIT, "total")
    assert await budgets.reserve(key, 2 * UNIT, now=NOW) is not None
    with pytest.raises(PaymentRequired, match="total budget") as caught:
        await budgets.reserve(key, 1, now=NOW)
    assert caught.value.retry_after is None


async def test_the_ledger_is_read_once_per_key_and_period(store):
    budgets = Budgets(MemoryCounters(), store)
    key, other = make_key(1, 1000 * UNIT), make_key(2, 1000 * UNIT)
    await reserve_all(budgets, key, 20, UNIT)
    for _ in range(20):
        await budgets.settle(await budgets.reserve(key, UNIT, now=NOW), UNIT // 2)
    assert store.calls["spent"] == 1
    await budgets.reserve(other, UNIT, now=NOW)
    assert store.calls["spent"] == 2
    next_month = datetime(2025, 4, 2, tzinfo=timezone.utc).timestamp()
    await budgets.reserve(key, UNIT, now=next_month)
    assert store.calls["spent"] == 3


async def test_a_second_process_does_not_overwrite_reservations_in_flight(store):
    counters = MemoryCounters()  # shared, as redis or the coordinator would be
    store.ledger.append((1, NOW - 60, 5 * UNIT))
    key = make_key(1, 12 * UNIT)
    await Budgets(counters, store).reserve(key, 5 * UNIT, now=NOW)  # 5 spent + 5 in flight
    with pytest.raises(PaymentRequired):
        await Budgets(counters, store).reserve(key, 3 * UNIT, now=NOW)


async def test_a_failed_ledger_read_is_retried_by_the_next_request(store):
    """... and it is the store's failure (a 503), never taken for the counters' (which
    would switch a replica to its own limits)."""
    budgets = Budgets(MemoryCounters(), store)
    key = make_key(1, 10 * UNIT)
    store.fail = True
    with pytest.raises(StoreUnavailable):
        await budgets.reserve(key, UNIT, now=NOW)
    store.fail = False
    assert await budgets.reserve(key, UNIT, now=NOW) is not None


async def test_keys_without_a_budget_reserve_nothing(store):
    budgets = Budgets(MemoryCounters(), store)
    assert await budgets.reserve(make_key(1, None), 10**15, now=NOW) is None
    await budgets.settle(None, 5)
    assert store.calls["spent"] == 0


def test_budget_windows():
    assert budget_window("day", NOW).label == "2025-03-15"
    month = budget_window("month", NOW)
    assert month.label == "2025-03"
    assert month.start == datetime(2025, 3, 1, tzinfo=timezone.utc).timestamp()
    dec = budget_window("month", datetime(2025, 12, 31, 23, tzinfo=timezone.utc).timestamp())
    assert dec.end == datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert budget_window("total", NOW).start is None
    with pytest.raises(ValueError, match="weekly"):
        budget_window("weekly", NOW)
