"""Secrets and the key cache: lookups from memory, changes seen within about a second."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from modelmart.tenancy.keys import KeyCache, generate_secret, hash_secret, prefix_of


def test_secrets_hashes_and_prefixes():
    secret = generate_secret()
    assert re.fullmatch(r"mm-[A-Za-z0-9_-]{43}", secret)
    assert generate_secret() != secret
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert prefix_of(secret) == secret[:10] and len(prefix_of(secret)) == 10


@pytest.fixture
async def cache(store):
    cache = KeyCache(store)  # the default poll interval: changes must show within ~1 s
    yield cache
    await cache.close()


async def eventually(predicate, within: float = 1.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < within, "not seen in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_lookup_finds_active_keys_from_memory_only(store, cache):
    secret, key = await store.new_key(name="one")
    await cache.start()
    calls = sum(store.calls.values())
    for _ in range(1000):
        assert cache.lookup(secret) is key
    assert cache.lookup(secret + "x") is None
    assert cache.lookup("") is None
    assert sum(store.calls.values()) == calls  # no store read on lookup


async def test_a_new_key_is_seen_within_a_second(store, cache):
    await cache.start()
    secret, key = await store.new_key()  # as the CLI in another process would
    assert cache.lookup(secret) is None
    await eventually(lambda: cache.lookup(secret) is not None)


async def test_a_revoked_key_is_refused_within_a_second(store, cache):
    secret, key = await store.new_key()
    await cache.start()
    assert cache.lookup(secret) is key
    store.revoke(key.id)
    await eventually(lambda: cache.lookup(secret) is None)


async def test_no_reload_while_the_change_counter_stands_still(store, cache):
    await store.new_key()
    await cache.start()
    await asyncio.sleep(1.2)
    assert store.calls["active_keys"] == 1
    assert store.calls["change_counter"] >= 2


async def test_aws_access_key_ids_are_looked_up_from_memory(store, cache):
    _, key = await store.new_key(aws_access_key_id="AKIAEXAMPLE", aws_secret="s3cr3t")
    await cache.start()
    assert cache.by_aws_access_key_id("AKIAEXAMPLE") is key
    assert cache.by_aws_access_key_id("AKIAOTHER") is None
    store.revoke(key.id)
    await eventually(lambda: cache.by_aws_access_key_id("AKIAEXAMPLE") is None)


async def test_store_errors_while_polling_are_survived(store, cache, caplog):
    secret, _ = await store.new_key()
    await cache.start()
    store.fail = True
    await asyncio.sleep(1.2)
    assert not cache._task.done()
    assert cache.lookup(secret) is not None  # the last good keys keep serving
    assert "store poll failed" in caplog.text
    store.fail = False
    new_secret, _ = await store.new_key()
    await eventually(lambda: cache.lookup(new_secret) is not None)


async def test_start_fails_loudly_when_the_store_is_down(store):
    store.fail = True
    with pytest.raises(ConnectionError):
        await KeyCache(store).start()


async def test_close_stops_polling(store, cache):
    await cache.start()
    await cache.close()
    polls = store.calls["change_counter"]
    await asyncio.sleep(0.7)
    assert store.calls["change_counter"] == polls
