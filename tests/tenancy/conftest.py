"""Fixtures: a real redis-server and a coordinator for the session, and one parametrized
``counters`` fixture so every counter test runs against every backend."""

from __future__ import annotations

import shutil
import tempfile
import uuid

import pytest

from modelmart.tenancy.coordinator import CoordinatorCounters, start_coordinator
from modelmart.tenancy.counters import MemoryCounters, RedisCounters
from tests.redis_server import redis_server
from tests.tenancy.fake_store import FakeStore


@pytest.fixture(scope="session")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def coordinator_socket():
    # A short path: Unix socket paths are limited to about 100 bytes.
    workdir = tempfile.mkdtemp(prefix="mm-coord-")
    handle = start_coordinator(f"{workdir}/counters.sock")
    yield handle.socket_path
    handle.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["memory", "redis", "coordinator"])
async def counters(request):
    if request.param == "memory":
        backend = MemoryCounters()
    elif request.param == "redis":
        backend = RedisCounters(request.getfixturevalue("redis_url"))
    else:
        backend = CoordinatorCounters(request.getfixturevalue("coordinator_socket"))
    yield backend
    await backend.close()


@pytest.fixture
def name():
    """A key name of its own per test: redis and the coordinator outlive a test."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store():
    return FakeStore()
