"""Issue #12, secrets at rest, on SQLite and PostgreSQL: API keys are stored as hashes only,
AWS secrets encrypted under the server key (from $MODELMART_SECRET_KEY, or a 0600 key file
beside a SQLite database), plaintext left by older versions encrypted by migrate, keys
rotated, and a wrong or missing server key refused loudly, never silently."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import uuid

import asyncpg
import pytest

from modelmart.store.base import open_store, sqlite_path
from modelmart.store.errors import SecretKeyError
from modelmart.store.sealing import SecretKeys, new_server_key, sealed_key_id
from modelmart.tenancy import accounts
from modelmart.tenancy.keys import KeyCache, hash_secret
from tests.marketplace.helpers import cli
from tests.pg import create_database, run_async

OLD_PLAINTEXT = "old-plaintext-aws-secret-0123456789abcd"


@pytest.fixture(autouse=True)
def no_configured_key(monkeypatch):
    monkeypatch.delenv("MODELMART_SECRET_KEY", raising=False)
    monkeypatch.delenv("MODELMART_SECRET_KEY_FILE", raising=False)


@pytest.fixture
def server_key(db_url, monkeypatch):
    """How each backend gets its key: PostgreSQL from the environment (replicas share it),
    SQLite from the key file generated beside the database."""
    if db_url.startswith("postgresql"):
        key = new_server_key()
        monkeypatch.setenv("MODELMART_SECRET_KEY", key)
        return key
    return None


async def raw(db_url: str, sql: str, *params) -> list[tuple]:
    """Straight from the database, not through our store."""
    if db_url.startswith("postgresql"):
        conn = await asyncpg.connect(db_url)
        try:
            return [tuple(r) for r in await conn.fetch(sql.replace("?", "$1"), *params)]
        finally:
            await conn.close()
    with sqlite3.connect(sqlite_path(db_url)) as conn:
        return conn.execute(sql, params).fetchall()


async def insert_plaintext_key(db_url: str, access_key_id: str = "AKIAOLD") -> None:
    """A key row as modelmart wrote it before secrets were encrypted."""
    await raw(db_url, "INSERT INTO api_keys (prefix, secret_hash, created_at, role, "
              f"aws_access_key_id, aws_secret) VALUES ('mm-old', '{uuid.uuid4().hex}', 0, "
              f"'user', '{access_key_id}', ?)", OLD_PLAINTEXT)


async def aws_key(store, customer: str = "acme"):
    if await store.get_customer(customer) is None:
        await accounts.create_customer(store, customer)
    return await accounts.create_key(store, customer, aws=True)


async def test_only_a_hash_of_the_api_key_and_the_aws_secret_encrypted(db_url, server_key):
    async with await open_store(db_url) as store:
        key, secret = await aws_key(store)
    assert key.aws_secret and len(key.aws_secret) == 40  # shown once, to the caller
    rows = await raw(db_url, "SELECT * FROM api_keys")
    stored = " ".join(str(value) for row in rows for value in row)
    assert secret not in stored and secret[10:] not in stored  # beyond the shown prefix
    assert key.aws_secret not in stored
    assert hash_secret(secret) in stored  # SHA-256 hex of the whole secret
    [(sealed,)] = await raw(db_url, "SELECT aws_secret FROM api_keys WHERE id = ?", key.id)
    assert sealed.startswith("v1:") and sealed_key_id(sealed)
    if not server_key:  # SQLite: not in the file, its WAL, anywhere on disk
        path = sqlite_path(db_url)
        for name in (path, path + "-wal"):
            data = open(name, "rb").read()
            assert secret.encode() not in data and key.aws_secret.encode() not in data


async def test_the_key_cache_decrypts_what_was_stored(db_url, server_key):
    async with await open_store(db_url) as store:
        key, _ = await aws_key(store)
        cache = KeyCache(store)
        await cache.start()
        try:
            assert cache.by_aws_access_key_id(key.aws_access_key_id).aws_secret == key.aws_secret
        finally:
            await cache.close()
        # Listings and reads from the store never carry the plaintext.
        assert all(k.aws_secret is None for k in await store.list_keys())


async def test_plaintext_from_an_older_version_is_encrypted_when_the_store_opens(
        db_url, server_key):
    async with await open_store(db_url):
        pass
    await insert_plaintext_key(db_url)
    async with await open_store(db_url, migrate=False) as store:
        assert await store.migrate() == ["encrypted 1 AWS secret(s)"]
        assert await store.migrate() == []
        [(sealed,)] = await raw(db_url, "SELECT aws_secret FROM api_keys")
        assert sealed.startswith("v1:") and OLD_PLAINTEXT not in sealed
        cache = KeyCache(store)
        await cache.start()
        try:
            assert cache.by_aws_access_key_id("AKIAOLD").aws_secret == OLD_PLAINTEXT
        finally:
            await cache.close()


async def test_modelmart_migrate_encrypts_plaintext(db_url, server_key):
    async with await open_store(db_url):
        pass
    await insert_plaintext_key(db_url)
    out = cli("migrate", "--database", db_url).stdout
    assert out.strip() == "applied: encrypted 1 AWS secret(s)"
    [(sealed,)] = await raw(db_url, "SELECT aws_secret FROM api_keys")
    assert sealed.startswith("v1:")


async def test_rotation_reencrypts_under_the_first_key(db_url, monkeypatch):
    old, new = new_server_key(), new_server_key()
    monkeypatch.setenv("MODELMART_SECRET_KEY", old)
    async with await open_store(db_url) as store:
        key, _ = await aws_key(store)
    monkeypatch.setenv("MODELMART_SECRET_KEY", f"{new},{old}")
    out = cli("migrate", "--database", db_url).stdout
    assert out.strip() == "applied: encrypted 1 AWS secret(s)"
    [(sealed,)] = await raw(db_url, "SELECT aws_secret FROM api_keys WHERE id = ?", key.id)
    assert sealed_key_id(sealed) == SecretKeys.parse(new, "").current_id
    monkeypatch.setenv("MODELMART_SECRET_KEY", new)  # the old key can go now
    async with await open_store(db_url) as store:
        cache = KeyCache(store)
        await cache.start()
        assert cache.by_aws_access_key_id(key.aws_access_key_id).aws_secret == key.aws_secret
        await cache.close()


async def test_a_wrong_server_key_fails_loudly_at_start(db_url, server_key, monkeypatch):
    async with await open_store(db_url) as store:
        key, _ = await aws_key(store)
    wrong = new_server_key()
    monkeypatch.setenv("MODELMART_SECRET_KEY", wrong)
    async with await open_store(db_url) as store:
        with pytest.raises(SecretKeyError) as err:
            await KeyCache(store).start()
    message = str(err.value)
    assert f"key {key.prefix} (id {key.id})" in message
    assert f"but $MODELMART_SECRET_KEY holds {SecretKeys.parse(wrong, '').current_id}" in message


async def test_a_damaged_or_moved_secret_is_refused(db_url, server_key):
    async with await open_store(db_url) as store:
        one, _ = await aws_key(store)
        two, _ = await aws_key(store)
        [(sealed_two,)] = await raw(db_url, "SELECT aws_secret FROM api_keys WHERE id = ?",
                                    two.id)
        # Another row's value under this row's access key id: the GCM tag says no.
        assert await store.replace_aws_secret(one.id, one.aws_secret_sealed, sealed_two)
        with pytest.raises(SecretKeyError, match="damaged or was altered"):
            await KeyCache(store).start()


async def test_a_malformed_server_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELMART_SECRET_KEY", "not-a-key")
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    async with await open_store(db) as store:
        with pytest.raises(SecretKeyError, match="a server key must be 32 random bytes"):
            await KeyCache(store).start()
    cli("customers", "create", "acme", "--database", db)
    proc = cli("keys", "create", "--customer", "acme", "--aws", "--database", db, check=False)
    assert proc.returncode == 2
    assert "$MODELMART_SECRET_KEY: a server key must be 32 random bytes" in proc.stderr


# ---- PostgreSQL: the key must be given ---------------------------------------------------

@pytest.fixture
def pg_url(postgres_url):
    return run_async(create_database(postgres_url, f"t_{uuid.uuid4().hex}"))


async def test_postgresql_without_a_server_key(pg_url):
    async with await open_store(pg_url) as store:
        await accounts.create_customer(store, "acme")
        with pytest.raises(ValueError, match="AWS credentials need a server key to encrypt "
                                             "their secret: set MODELMART_SECRET_KEY"):
            await accounts.create_key(store, "acme", aws=True)
        key, _ = await accounts.create_key(store, "acme")  # keys without AWS need none
        assert key.aws_access_key_id is None
    await insert_plaintext_key(pg_url)
    with pytest.raises(SecretKeyError, match=r"holds 1 AWS secret\(s\) in plaintext, and no "
                                             "server key is configured"):
        await open_store(pg_url)
    proc = cli("migrate", "--database", pg_url, check=False)
    assert proc.returncode == 2 and "set MODELMART_SECRET_KEY" in proc.stderr


async def test_postgresql_never_generates_a_key_file(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELMART_SECRET_KEY_FILE", str(tmp_path / "absent.key"))
    async with await open_store(pg_url) as store:
        await accounts.create_customer(store, "acme")
        with pytest.raises(SecretKeyError, match="absent.key, which does not exist"):
            await accounts.create_key(store, "acme", aws=True)
    assert not (tmp_path / "absent.key").exists()


async def test_postgresql_with_sealed_secrets_and_no_key_does_not_start(pg_url, monkeypatch):
    monkeypatch.setenv("MODELMART_SECRET_KEY", new_server_key())
    async with await open_store(pg_url) as store:
        await aws_key(store)
    monkeypatch.delenv("MODELMART_SECRET_KEY")
    async with await open_store(pg_url) as store:  # the ledger's own work needs no key
        with pytest.raises(SecretKeyError, match="no server key is configured: set "
                                                 "MODELMART_SECRET_KEY"):
            await KeyCache(store).start()


# ---- SQLite: the key file --------------------------------------------------------------

@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    yield
    os.umask(old)


async def test_sqlite_key_file_is_generated_0600_beside_the_database(tmp_path,
                                                                     permissive_umask):
    db = f"sqlite:///{tmp_path / 'modelmart.db'}"
    async with await open_store(db) as store:
        cache = KeyCache(store)
        await cache.start()  # the first start makes it
        await cache.close()
        key_file = tmp_path / "modelmart.key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        text = key_file.read_text()
        assert text.startswith("# modelmart server key") and "Back it up" in text
        key, _ = await aws_key(store)  # sealed with that file's key
        file_keys = SecretKeys.parse(text, "file")
        assert file_keys.open(key.aws_secret_sealed, key.aws_access_key_id) == key.aws_secret
    assert text == key_file.read_text()  # made once


async def test_sqlite_key_file_made_by_the_cli_is_the_servers(tmp_path):
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    cli("customers", "create", "acme", "--database", db)
    view = __import__("json").loads(cli("keys", "create", "--customer", "acme", "--aws",
                                        "--json", "--database", db).stdout)
    assert (tmp_path / "mm.key").exists()
    async with await open_store(db) as store:
        cache = KeyCache(store)
        await cache.start()
        found = cache.by_aws_access_key_id(view["aws_access_key_id"])
        assert found.aws_secret == view["aws_secret_access_key"]
        await cache.close()


async def test_a_lost_key_file_is_an_error_not_a_new_key(tmp_path):
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    async with await open_store(db) as store:
        await aws_key(store)
    os.unlink(tmp_path / "mm.key")
    async with await open_store(db) as store:
        with pytest.raises(SecretKeyError, match=r"mm.key is missing, but the database holds "
                                                 "AWS secrets encrypted with server key"):
            await KeyCache(store).start()
        with pytest.raises(SecretKeyError, match="restore the file"):
            await aws_key(store)
    assert not (tmp_path / "mm.key").exists()


async def test_a_readable_key_file_is_tightened_with_a_warning(tmp_path, caplog):
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    async with await open_store(db) as store:
        await aws_key(store)
        os.chmod(tmp_path / "mm.key", 0o644)
        with caplog.at_level(logging.WARNING, logger="modelmart.store.files"):
            await aws_key(store)
    assert stat.S_IMODE(os.stat(tmp_path / "mm.key").st_mode) == 0o600
    assert "mm.key was readable by other users (mode 644)" in caplog.text


async def test_an_explicit_key_file(tmp_path, monkeypatch, permissive_umask):
    monkeypatch.setenv("MODELMART_SECRET_KEY_FILE", str(tmp_path / "elsewhere.key"))
    async with await open_store(str(tmp_path / "mm.db")) as store:
        key, _ = await aws_key(store)
    assert not (tmp_path / "mm.key").exists()
    assert stat.S_IMODE(os.stat(tmp_path / "elsewhere.key").st_mode) == 0o600
    keys = SecretKeys.parse((tmp_path / "elsewhere.key").read_text(), "file")
    assert keys.open(key.aws_secret_sealed, key.aws_access_key_id) == key.aws_secret
