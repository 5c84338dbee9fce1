"""Secrets and the key cache: lookups from memory, changes seen within about a second."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from modelmart.store.errors import SecretKeyError
from modelmart.store.sealing import SecretKeys, new_server_key
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


SERVER_KEY = SecretKeys.parse(new_server_key(), "test key")


async def new_aws_key(store, access_key_id: str, secret: str, server_key=SERVER_KEY):
    """A key as accounts.create_key stores it: the AWS secret only in its sealed form."""
    return await store.new_key(aws_access_key_id=access_key_id,
                               aws_secret_sealed=server_key.seal(secret, access_key_id))


async def test_aws_access_key_ids_are_looked_up_from_memory(store):
    cache = KeyCache(store, secret_keys=SERVER_KEY)
    _, key = await new_aws_key(store, "AKIAEXAMPLE", "s3cr3t")
    await cache.start()
    try:
        assert cache.by_aws_access_key_id("AKIAEXAMPLE") is key
        assert key.aws_secret == "s3cr3t"  # decrypted in memory, for SigV4
        assert cache.by_aws_access_key_id("AKIAOTHER") is None
        store.revoke(key.id)
        await eventually(lambda: cache.by_aws_access_key_id("AKIAEXAMPLE") is None)
    finally:
        await cache.close()


async def test_aws_secrets_are_decrypted_when_loaded_not_per_request(store, monkeypatch):
    opened = []
    real_open = SecretKeys.open
    monkeypatch.setattr(SecretKeys, "open",
                        lambda self, *a: opened.append(a[1]) or real_open(self, *a))
    cache = KeyCache(store, secret_keys=SERVER_KEY)
    await new_aws_key(store, "AKIAONE", "one")
    await cache.start()
    try:
        assert opened == ["AKIAONE"]
        for _ in range(1000):
            assert cache.by_aws_access_key_id("AKIAONE").aws_secret == "one"
        await new_aws_key(store, "AKIATWO", "two")  # a reload: only the new one is opened
        await eventually(lambda: cache.by_aws_access_key_id("AKIATWO") is not None)
        assert cache.by_aws_access_key_id("AKIATWO").aws_secret == "two"
        assert sorted(opened) == ["AKIAONE", "AKIATWO"]
    finally:
        await cache.close()


async def test_a_wrong_server_key_stops_the_start(store):
    await new_aws_key(store, "AKIAONE", "one")
    other = SecretKeys.parse(new_server_key(), "$MODELMART_SECRET_KEY")
    with pytest.raises(SecretKeyError) as err:
        await KeyCache(store, secret_keys=other).start()
    assert "cannot decrypt the AWS secrets of 1 key(s)" in str(err.value)
    assert (f"encrypted with server key {SERVER_KEY.current_id}, but $MODELMART_SECRET_KEY "
            f"holds {other.current_id}") in str(err.value)


async def test_a_missing_server_key_stops_the_start(store, monkeypatch):
    monkeypatch.delenv("MODELMART_SECRET_KEY", raising=False)
    monkeypatch.delenv("MODELMART_SECRET_KEY_FILE", raising=False)
    await new_aws_key(store, "AKIAONE", "one")
    with pytest.raises(SecretKeyError, match="no server key is configured: set "
                                             "MODELMART_SECRET_KEY"):
        await KeyCache(store).start()  # the fake store, like PostgreSQL, has no key file


async def test_an_undecryptable_key_made_later_is_logged_and_keeps_its_bearer_secret(
        store, caplog):
    """Made by a process with another server key (a misconfigured replica): this cache
    says so, and the key still works with its bearer secret; the others are unaffected."""
    cache = KeyCache(store, secret_keys=SERVER_KEY)
    await new_aws_key(store, "AKIAGOOD", "good")
    await cache.start()
    try:
        other = SecretKeys.parse(new_server_key(), "elsewhere")
        secret, key = await new_aws_key(store, "AKIABAD", "bad", server_key=other)
        await eventually(lambda: cache.lookup(secret) is not None)
        assert cache.by_aws_access_key_id("AKIABAD") is None
        assert cache.by_aws_access_key_id("AKIAGOOD").aws_secret == "good"
        assert f"SigV4 is off for key {key.prefix} (id {key.id})" in caplog.text
        assert f"encrypted with server key {other.current_id}" in caplog.text
    finally:
        await cache.close()


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
