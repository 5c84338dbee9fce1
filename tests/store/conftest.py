"""Store fixtures: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from modelmart.store.base import open_store
from tests.pg import create_database, postgres_server, run_async


@pytest.fixture(scope="session")
def postgres_url():
    """One throwaway server for the whole session; tests get fresh databases on it."""
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A URL to an empty, not yet migrated database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"  # an absolute path: sqlite:////tmp/...
    server = request.getfixturevalue("postgres_url")
    return run_async(create_database(server, f"t_{uuid.uuid4().hex}"))


@pytest.fixture
async def store(db_url):
    store = await open_store(db_url)
    yield store
    await store.close()
