"""open_store URL handling, SQLite settings, and several processes sharing one database."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from modelmart.store.base import open_store, sqlite_path
from modelmart.store.errors import StoreError
from modelmart.store.postgres import PostgresStore
from modelmart.store.sqlite import SqliteStore


@pytest.mark.parametrize("url, path", [
    ("sqlite:///modelmart.db", "modelmart.db"),
    ("sqlite:///data/x.db", "data/x.db"),
    ("sqlite:////abs/path.db", "/abs/path.db"),
    ("sqlite:///:memory:", ":memory:"),
    ("relative/file.db", "relative/file.db"),
    ("/abs/file.db", "/abs/file.db"),
    ("postgresql://u:p@h:5432/db", None),
    ("mysql://u@h/db", None),
])
def test_sqlite_path(url, path):
    assert sqlite_path(url) == path


async def _opens_file(url, expected: Path, cls=SqliteStore):
    store = await open_store(url)
    try:
        assert isinstance(store, cls)
        await store.create_customer("acme")
    finally:
        await store.close()
    assert expected.exists()


async def test_default_url_is_modelmart_db_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELMART_DATABASE_URL", raising=False)
    await _opens_file(None, tmp_path / "modelmart.db")


async def test_env_var_url(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELMART_DATABASE_URL", f"sqlite:///{tmp_path}/from-env.db")
    await _opens_file(None, tmp_path / "from-env.db")


async def test_relative_url_and_plain_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    await _opens_file("sqlite:///rel.db", tmp_path / "rel.db")
    await _opens_file("plain.db", tmp_path / "plain.db")
    await _opens_file(str(tmp_path / "abs.db"), tmp_path / "abs.db")


async def test_unsupported_url():
    with pytest.raises(StoreError, match="unsupported database URL"):
        await open_store("mysql://u@h/db")


async def test_unopenable_sqlite_file(tmp_path):
    with pytest.raises(StoreError, match="cannot open SQLite"):
        await open_store(str(tmp_path / "no" / "such" / "dir.db"))


async def test_postgres_scheme_alias(postgres_url):
    store = await open_store(postgres_url.replace("postgresql://", "postgres://", 1))
    try:
        assert isinstance(store, PostgresStore)
        assert await store.migrate() == []
    finally:
        await store.close()


async def test_sqlite_runs_in_wal_mode(tmp_path):
    store = await open_store(str(tmp_path / "wal.db"))
    await store.close()
    with sqlite3.connect(tmp_path / "wal.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WORKER = """
import asyncio, sys
from modelmart.store.base import open_store
from tests.store.helpers import api_key, usage

async def main(url, first):
    store = await open_store(url)
    new = 0
    for start in range(first, first + 2000, 100):  # many short transactions
        new += await store.insert_usage([usage(f"r{i}") for i in range(start, start + 100)])
        customer = await store.create_customer(f"c{first}-{start}")
        await store.create_key(api_key(customer.id, f"mm-{first}-{start}"))
    await store.close()
    print(new)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_several_processes_share_one_database(db_url):
    """Gateway workers and the CLI each open the same database; ids overlap between them."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, db_url, str(first), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for first in (0, 1000, 1500)]
    outputs = [await p.communicate() for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err.decode()
    assert sum(int(out) for out, _ in outputs) == 3500  # r0 .. r3499, each once
    store = await open_store(db_url)
    try:
        assert await store.count_usage() == 3500
        assert len(await store.list_customers()) == 60
        assert len(await store.active_keys()) == 60
        assert await store.change_counter() == 120
    finally:
        await store.close()
