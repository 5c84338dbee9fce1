"""usage_summary, usage_rows and spent over a small ledger whose totals we worked out by hand."""

from __future__ import annotations

import pytest

from tests.store.helpers import usage, utc

JAN31 = utc(2024, 1, 31, 10)
JAN31_LAST = utc(2024, 1, 31, 23, 59, 59)
FEB1 = utc(2024, 2, 1)  # midnight: belongs to Feb 1
FEB1_NOON = utc(2024, 2, 1, 12)
FEB2 = utc(2024, 2, 2, 8)

LEDGER = [
    usage("r1", created_at=JAN31, customer_id=1, key_id=10, model="m-a", deployment="d1",
          provider="p1", status="ok", input_tokens=100, output_tokens=10, cache_read_tokens=5,
          cache_write_tokens=1, reasoning_tokens=2, cost_pico=1000, price_pico=1500),
    usage("r2", created_at=JAN31_LAST, customer_id=1, key_id=11, model="m-b", deployment="d2",
          provider="p2", status="ok", input_tokens=200, output_tokens=20, cost_pico=2000,
          price_pico=2600),
    usage("r3", created_at=FEB1, customer_id=1, key_id=10, model="m-a", deployment="d1",
          provider="p1", status="error", input_tokens=50),
    usage("r4", created_at=FEB1_NOON, customer_id=2, key_id=20, model="m-a", deployment=None,
          provider=None, status="ok", input_tokens=300, output_tokens=30, cache_read_tokens=10,
          cache_write_tokens=3, reasoning_tokens=4, cost_pico=3000, price_pico=3300),
    usage("r5", created_at=FEB2, customer_id=None, key_id=None, model="m-b", deployment="d2",
          provider="p2", status="client_disconnected", input_tokens=7, output_tokens=3,
          cost_pico=70, price_pico=90),
]


def totals(requests, inp, out, cread, cwrite, reason, cost, price, margin) -> dict:
    return dict(requests=requests, input_tokens=inp, output_tokens=out,
                cache_read_tokens=cread, cache_write_tokens=cwrite, reasoning_tokens=reason,
                cost_pico=cost, price_pico=price, margin_pico=margin)


R1_R3 = totals(2, 150, 10, 5, 1, 2, 1000, 1500, 500)
R2 = totals(1, 200, 20, 0, 0, 0, 2000, 2600, 600)
R3 = totals(1, 50, 0, 0, 0, 0, 0, 0, 0)
R4 = totals(1, 300, 30, 10, 3, 4, 3000, 3300, 300)
R5 = totals(1, 7, 3, 0, 0, 0, 70, 90, 20)
R2_R5 = totals(2, 207, 23, 0, 0, 0, 2070, 2690, 620)
JANUARY = totals(2, 300, 30, 5, 1, 2, 3000, 4100, 1100)
EVERYTHING = totals(5, 657, 63, 15, 4, 6, 6070, 7490, 1420)

EXPECTED = {
    "day": [("2024-01-31", JANUARY), ("2024-02-01", totals(2, 350, 30, 10, 3, 4, 3000, 3300, 300)),
            ("2024-02-02", R5)],
    "month": [("2024-01", JANUARY), ("2024-02", totals(3, 357, 33, 10, 3, 4, 3070, 3390, 320))],
    "model": [("m-a", totals(3, 450, 40, 15, 4, 6, 4000, 4800, 800)), ("m-b", R2_R5)],
    "key": [(10, R1_R3), (11, R2), (20, R4), (None, R5)],
    "customer": [(1, totals(3, 350, 30, 5, 1, 2, 3000, 4100, 1100)), (2, R4), (None, R5)],
    "provider": [("p1", R1_R3), ("p2", R2_R5), (None, R4)],
    "deployment": [("d1", R1_R3), ("d2", R2_R5), (None, R4)],
    "status": [("client_disconnected", R5), ("error", R3),
               ("ok", totals(3, 600, 60, 15, 4, 6, 6000, 7400, 1400))],
}


@pytest.fixture
async def ledger(store):
    assert await store.insert_usage(list(reversed(LEDGER))) == len(LEDGER)
    return store


@pytest.mark.parametrize("by", sorted(EXPECTED))
async def test_summary_by_each_field(ledger, by):
    expected = [{by: value, **sums} for value, sums in EXPECTED[by]]
    assert await ledger.usage_summary(by=[by]) == expected


async def test_summary_without_grouping(ledger):
    assert await ledger.usage_summary() == [EVERYTHING]


async def test_summary_on_empty_ledger(store):
    assert await store.usage_summary() == []
    assert await store.usage_summary(by=["model"]) == []


async def test_summary_by_two_fields(ledger):
    got = await ledger.usage_summary(by=["customer", "model"])
    assert got == [
        {"customer": 1, "model": "m-a", **R1_R3},
        {"customer": 1, "model": "m-b", **R2},
        {"customer": 2, "model": "m-a", **R4},
        {"customer": None, "model": "m-b", **R5},
    ]


async def test_summary_filters(ledger):
    assert await ledger.usage_summary(customer_id=1, by=["day"]) == [
        {"day": "2024-01-31", **JANUARY}, {"day": "2024-02-01", **R3}]
    assert await ledger.usage_summary(key_id=10) == [R1_R3]
    # since is inclusive (r3 sits exactly on it), until exclusive
    feb1 = await ledger.usage_summary(since=FEB1, until=utc(2024, 2, 2), by=["model"])
    assert feb1 == [{"model": "m-a", **totals(2, 350, 30, 10, 3, 4, 3000, 3300, 300)}]


async def test_summary_rejects_unknown_group(store):
    with pytest.raises(ValueError, match="colour"):
        await store.usage_summary(by=["colour"])


async def test_usage_rows(ledger):
    assert await ledger.usage_rows() == LEDGER
    assert await ledger.usage_rows(customer_id=1) == LEDGER[:3]
    assert await ledger.usage_rows(since=FEB1) == LEDGER[2:]
    assert await ledger.usage_rows(until=FEB1) == LEDGER[:2]
    assert await ledger.usage_rows(customer_id=2, since=FEB1, until=FEB2) == [LEDGER[3]]


async def test_spent(ledger):
    assert await ledger.spent() == 7490
    assert await ledger.spent(customer_id=1) == 4100
    assert await ledger.spent(key_id=10) == 1500
    assert await ledger.spent(since=FEB1) == 3390
    assert await ledger.spent(key_id=10, since=FEB1) == 0
    assert await ledger.spent(customer_id=99) == 0
