"""Fixtures: a real redis-server and a coordinator for the session, and one parametrized
``counters`` fixture so every counter test runs against every backend."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from modelmart.tenancy.coordinator import CoordinatorCounters, start_coordinator
from modelmart.tenancy.counters import MemoryCounters, RedisCounters
from tests.tenancy.fake_store import FakeStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url():
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required (apt-get install -y redis-server)"
    workdir = tempfile.mkdtemp(prefix="mm-redis-")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
         "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        _wait_for_redis(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _die_with_parent() -> None:
    # A pytest killed by a timeout runs no finalizers; this keeps redis from outliving it.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_redis(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, "redis-server exited at startup"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING")


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
