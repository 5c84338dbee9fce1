"""What the console reads and writes in the store, on SQLite and PostgreSQL: the daily
rollup of the ledger (equal to the raw rows for every filter and window, replays not
counted twice), key and customer updates (which move the change counter), and sessions."""

from __future__ import annotations

import random
import time

import pytest

from modelmart.store.ledger import DAY, LedgerFilter
from modelmart.store.sessions import ConsoleSession
from tests.store.helpers import api_key, usage, utc

T0 = utc(2024, 3, 1)


def _ledger(n: int, seed: int = 7) -> list:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(usage(
            f"q{i}", created_at=T0 + rnd.random() * 5 * DAY,
            customer_id=rnd.choice([1, 2, None]), key_id=rnd.choice([10, 11, 20, None]),
            model=rnd.choice(["m-a", "m-b"]), provider=rnd.choice(["p1", "p2", None]),
            status=rnd.choice(["ok", "ok", "ok", "error", "refused"]),
            input_tokens=rnd.randrange(500), output_tokens=rnd.randrange(500),
            cache_read_tokens=rnd.randrange(3), cost_pico=rnd.randrange(10**12),
            price_pico=rnd.randrange(10**12)))
    return rows


def _by_hand(rows, f: LedgerFilter, by: list[str]) -> dict:
    out: dict = {}
    for rec in rows:
        if f.since is not None and rec.created_at < f.since:
            continue
        if f.until is not None and rec.created_at >= f.until:
            continue
        if any(getattr(f, name) is not None and getattr(rec, name) != getattr(f, name)
               for name in ("customer_id", "key_id", "model", "provider", "status")):
            continue
        ident = tuple({"customer": rec.customer_id, "key": rec.key_id, "model": rec.model,
                       "provider": rec.provider, "status": rec.status,
                       "day": int(rec.created_at // DAY)}[b] for b in by)
        slot = out.setdefault(ident, [0, 0, 0, 0])
        slot[0] += 1
        slot[1] += rec.input_tokens
        slot[2] += rec.cost_pico
        slot[3] += rec.price_pico
    return out


def _seen(rows: list[dict], by: list[str]) -> dict:
    return {tuple(r[b] for b in by): [r["requests"], r["input_tokens"], r["cost_pico"],
                                      r["price_pico"]] for r in rows}


async def test_ledger_summary_equals_the_rows_for_every_filter_and_window(store):
    rows = _ledger(400)
    await store.insert_usage(rows[:300])
    await store.insert_usage(rows[200:])  # a replay of 100 rows adds nothing
    filters = [
        LedgerFilter(),
        LedgerFilter(since=T0 + DAY, until=T0 + 3 * DAY),  # whole days: usage_daily
        LedgerFilter(since=T0 + 0.5 * DAY, until=T0 + 3.25 * DAY),  # edges from usage
        LedgerFilter(since=T0 + 1.2 * DAY, until=T0 + 1.7 * DAY),  # inside one day
        LedgerFilter(customer_id=1, since=T0 + DAY),
        LedgerFilter(key_id=11, model="m-b", until=T0 + 2.5 * DAY),
        LedgerFilter(provider="p2", status="ok"),
    ]
    for f in filters:
        for by in ([], ["customer"], ["day", "status"], ["key", "model", "provider"]):
            got = await store.ledger_summary(f, by)
            assert _seen(got, by) == _by_hand(rows, f, by), (f, by)
    hours = await store.ledger_summary(LedgerFilter(since=T0, until=T0 + DAY), ["hour"])
    assert sum(r["requests"] for r in hours) == len(_ledger_in(rows, T0, T0 + DAY))
    assert all(T0 // 3600 <= r["hour"] < (T0 + DAY) // 3600 for r in hours)


def _ledger_in(rows, since, until):
    return [r for r in rows if since <= r.created_at < until]


async def test_money_past_two_to_the_63_stays_exact(store):
    big = 2**62 + 12345  # four of them overflow SQLite's integers, and a double's 53 bits
    await store.insert_usage([usage(f"b{i}", created_at=T0 + i, cost_pico=big, price_pico=big)
                              for i in range(4)])
    [total] = await store.ledger_summary(LedgerFilter(since=T0 - DAY // 2, until=T0 + DAY))
    assert total["price_pico"] == 4 * big
    [total] = await store.ledger_summary(LedgerFilter(since=T0, until=T0 + DAY))
    assert total["price_pico"] == 4 * big


async def test_ledger_page_goes_newest_first_and_continues(store):
    rows = _ledger(50)
    await store.insert_usage(rows)
    f = LedgerFilter(customer_id=1)
    expected = sorted((r for r in rows if r.customer_id == 1), key=lambda r: -r.created_at)
    first = await store.ledger_page(f, limit=7)
    rest = await store.ledger_page(f, limit=1000,
                                   before=(first[-1][1].created_at, first[-1][0]))
    assert [rec.request_id for _, rec in first + rest] == [r.request_id for r in expected]
    exported = await store.ledger_rows(f)
    assert [rec.request_id for _, rec in exported] == [r.request_id for r in expected[::-1]]


async def test_update_key_and_customer_move_the_change_counter(store):
    customer = await store.create_customer("acme")
    key = await store.create_key(api_key(customer.id, "mm-update-secret"))
    before = await store.change_counter()
    assert await store.update_key(key.id, {"rpm": 5, "models": ["m-a"], "budget_pico": 10**12,
                                           "budget_period": "day"})
    stored = await store.get_key(key.id)
    assert (stored.rpm, stored.models, stored.budget_pico, stored.budget_period) == \
        (5, ["m-a"], 10**12, "day")
    assert await store.change_counter() == before + 1
    assert await store.update_key(key.id, {"rpm": None, "models": None})
    stored = await store.get_key(key.id)
    assert stored.rpm is None and stored.models is None
    assert await store.update_customer(customer.id, {"rpm": 9, "tpm": None})
    assert (await store.get_customer("acme")).rpm == 9
    assert await store.change_counter() == before + 3
    await store.revoke_key(key.id)
    assert not await store.update_key(key.id, {"rpm": 1})  # revoked keys stay as they were
    with pytest.raises(ValueError):
        await store.update_key(key.id, {"secret_hash": "x"})


async def test_sessions(store):
    now = time.time()
    live = ConsoleSession("h1", 1, None, "admin", now, now, now + 3600, "127.0.0.1")
    idle = ConsoleSession("h2", 2, 5, "customer", now - 7200, now - 7200, now + 3600)
    old = ConsoleSession("h3", 2, 5, "customer", now - 9e4, now, now - 1)
    for s in (live, idle, old):
        await store.create_session(s)
    assert await store.get_session("h1") == live
    await store.touch_session("h1", now + 5)
    assert (await store.get_session("h1")).last_seen == now + 5
    assert await store.purge_sessions(now, idle_cutoff=now - 1800) == 2
    assert await store.get_session("h2") is None and await store.get_session("h3") is None
    assert await store.delete_session("h1") and await store.get_session("h1") is None
