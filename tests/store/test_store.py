"""Every Store method, on SQLite and PostgreSQL (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from modelmart.store.base import open_store
from modelmart.store.errors import Conflict, NotFoundInStore
from modelmart.store.migrations import MIGRATIONS
from tests.store.helpers import api_key, usage

ALL_MIGRATIONS = [m.name for m in MIGRATIONS]


# migrations

async def test_migrate_is_idempotent(store, db_url):
    assert await store.migrate() == []
    again = await open_store(db_url)
    try:
        assert await again.migrate() == []
    finally:
        await again.close()


async def test_concurrent_migrations_apply_each_once(db_url):
    stores = await asyncio.gather(*(open_store(db_url, migrate=False) for _ in range(4)))
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(sum(applied, [])) == ALL_MIGRATIONS
        assert await stores[0].count_usage() == 0
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_open_store(db_url):
    stores = await asyncio.gather(*(open_store(db_url) for _ in range(3)))
    try:
        customer = await stores[0].create_customer("acme")
        assert await stores[2].get_customer("acme") == customer
    finally:
        await asyncio.gather(*(s.close() for s in stores))


# customers

async def test_customers(store):
    acme = await store.create_customer("acme", rpm=60, tpm=1000)
    beta = await store.create_customer("beta")
    assert acme.id != beta.id and acme.rpm == 60 and acme.tpm == 1000 and beta.rpm is None
    assert await store.get_customer("acme") == acme
    assert await store.get_customer_by_id(beta.id) == beta
    assert await store.get_customer("nobody") is None
    assert await store.get_customer_by_id(9999) is None
    assert await store.list_customers() == [acme, beta]


async def test_duplicate_customer_is_a_conflict(store):
    await store.create_customer("acme")
    counter = await store.change_counter()
    with pytest.raises(Conflict, match="customer 'acme' already exists"):
        await store.create_customer("acme")
    assert await store.change_counter() == counter  # the failed insert was rolled back
    assert len(await store.list_customers()) == 1


# keys

async def test_create_and_get_key(store):
    acme = await store.create_customer("acme")
    key = api_key(acme.id, "mm-secret-1", models=["m-a", "m-b"], rpm=5, tpm=50,
                  budget_pico=10**15, budget_period="month", name="ci",
                  aws_access_key_id="AKIA1", aws_secret_sealed="v1:0123abcd:opaque-to-the-store")
    created = await store.create_key(key)
    assert created.id > 0
    assert created == replace(key, id=created.id)
    assert await store.get_key(created.id) == replace(created, customer_name="acme")
    assert await store.get_key(9999) is None


async def test_admin_key_and_all_models(store):
    admin = await store.create_key(api_key(None, "mm-admin", role="admin"))
    got = await store.get_key(admin.id)
    assert got.customer_id is None and got.customer_name is None
    assert got.role == "admin" and got.models is None


async def test_key_uniqueness_and_unknown_customer(store):
    acme = await store.create_customer("acme")
    await store.create_key(api_key(acme.id, "mm-one", aws_access_key_id="AKIA1"))
    await store.create_key(api_key(acme.id, "mm-two"))  # several keys without AWS ids
    await store.create_key(api_key(acme.id, "mm-three"))
    with pytest.raises(Conflict, match="AKIA1"):
        await store.create_key(api_key(acme.id, "mm-four", aws_access_key_id="AKIA1"))
    with pytest.raises(Conflict, match="secret"):
        await store.create_key(api_key(acme.id, "mm-two"))
    with pytest.raises(NotFoundInStore):
        await store.create_key(api_key(4242, "mm-orphan"))
    assert len(await store.list_keys()) == 3


async def test_list_revoke_and_active_keys(store):
    acme = await store.create_customer("acme")
    beta = await store.create_customer("beta")
    k1 = await store.create_key(api_key(acme.id, "mm-a1"))
    k2 = await store.create_key(api_key(acme.id, "mm-a2"))
    k3 = await store.create_key(api_key(beta.id, "mm-b1"))
    assert [k.id for k in await store.list_keys()] == [k1.id, k2.id, k3.id]
    assert [k.customer_name for k in await store.list_keys()] == ["acme", "acme", "beta"]
    assert [k.id for k in await store.list_keys(customer_id=beta.id)] == [k3.id]

    assert await store.revoke_key(k2.id) is True
    assert await store.revoke_key(k2.id) is False  # already revoked
    assert await store.revoke_key(9999) is False
    assert (await store.get_key(k2.id)).revoked_at is not None
    assert [k.id for k in await store.list_keys(customer_id=acme.id)] == [k1.id]
    listed = await store.list_keys(customer_id=acme.id, include_revoked=True)
    assert [k.id for k in listed] == [k1.id, k2.id]
    active = await store.active_keys()
    assert [(k.id, k.customer_name) for k in active] == [(k1.id, "acme"), (k3.id, "beta")]


async def test_change_counter_moves_on_every_mutation(store):
    start = await store.change_counter()
    acme = await store.create_customer("acme")
    assert await store.change_counter() == start + 1
    key = await store.create_key(api_key(acme.id, "mm-a1"))
    assert await store.change_counter() == start + 2
    assert await store.revoke_key(key.id)
    assert await store.change_counter() == start + 3
    await store.revoke_key(key.id)  # no change, no bump
    await store.insert_usage([usage("r1")])  # the ledger is not tenancy
    assert await store.change_counter() == start + 3


async def test_change_counter_is_shared_between_processes(store, db_url):
    other = await open_store(db_url)
    try:
        before = await other.change_counter()
        await store.create_customer("acme")
        assert await other.change_counter() == before + 1
    finally:
        await other.close()


# ledger

async def test_insert_and_get_usage_round_trip(store):
    rec = usage("req-1", stream=True, input_tokens=11, output_tokens=22, cache_read_tokens=3,
                cache_write_tokens=4, reasoning_tokens=5, cost_pico=123, price_pico=456,
                latency_ms=12.5, ttft_ms=3.25, attempts=2, http_status=502, status="error",
                error="upstream said no", extra={"retries": [1, 2], "note": "ü"})
    bare = usage("req-2", deployment=None, provider=None, customer_id=None, key_id=None)
    assert await store.insert_usage([rec, bare]) == 2
    assert await store.get_usage("req-1") == rec
    assert await store.get_usage("req-2") == bare
    assert await store.get_usage("nope") is None
    assert await store.count_usage() == 2
    assert await store.insert_usage([]) == 0


async def test_duplicate_request_ids_are_skipped(store):
    assert await store.insert_usage([usage("a"), usage("b"), usage("a")]) == 2
    assert await store.insert_usage([usage("b", price_pico=999), usage("c")]) == 1
    assert await store.count_usage() == 3
    assert (await store.get_usage("b")).price_pico == 0  # the first write wins


async def test_concurrent_inserts_skip_each_others_duplicates(store, db_url):
    other = await open_store(db_url)
    try:
        first = [usage(f"r{i}") for i in range(0, 600)]
        second = [usage(f"r{i}") for i in range(300, 900)]
        counts = await asyncio.gather(store.insert_usage(first), other.insert_usage(second))
        assert sum(counts) == 900
        assert await store.count_usage() == 900
    finally:
        await other.close()


@pytest.mark.parametrize("size", [1, 5, 255, 257, 341, 599])
async def test_batches_of_any_size_keep_every_row_once(store, size):
    # SQLite writes a batch in statements of 256, 64, 16, 4 and 1 rows.
    batch = [usage(f"n{i}", input_tokens=i) for i in range(size)]
    batch.insert(size // 2 + 1, usage("n0", input_tokens=-1))  # a repeat, after the first
    assert await store.insert_usage(batch) == size
    assert await store.count_usage() == size
    assert (await store.get_usage("n0")).input_tokens == 0
    assert (await store.get_usage(f"n{size - 1}")).input_tokens == size - 1


async def test_ten_thousand_rows_in_one_batch(store):
    batch = [usage(f"bulk-{i}", input_tokens=i, price_pico=i) for i in range(10_000)]
    assert await store.insert_usage(batch) == 10_000
    assert await store.count_usage() == 10_000
    assert await store.spent() == sum(range(10_000))


# exact money

BIG = 2**62 + 12345  # two of these pass 2^63; three pass it by far


async def test_sums_past_two_to_the_63_are_exact(store):
    await store.insert_usage([usage(f"big{i}", price_pico=BIG + i, cost_pico=BIG - i,
                                    customer_id=7) for i in range(3)])
    await store.insert_usage([usage("small", price_pico=1, cost_pico=0)])
    total_price = 3 * BIG + 3 + 1
    assert total_price > 2**63
    assert await store.spent() == total_price
    assert await store.spent(customer_id=7) == 3 * BIG + 3
    [row] = await store.usage_summary()
    assert row["price_pico"] == total_price and row["cost_pico"] == 3 * BIG - 3
    assert row["margin_pico"] == 7
    assert all(type(v) is int for k, v in row.items())


async def test_sums_are_not_floats(store):
    # 2^53 + 1 is the first integer a double cannot hold.
    await store.insert_usage([usage("x", price_pico=2**53), usage("y", price_pico=1)])
    assert await store.spent() == 2**53 + 1
