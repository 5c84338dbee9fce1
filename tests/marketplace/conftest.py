"""Marketplace fixtures: the priced gateway, clean fake scripts, a real Redis, PostgreSQL."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from tests.harness import GatewayServer
from tests.marketplace.helpers import priced_catalog
from tests.pg import postgres_server


@pytest.fixture
def scripted(fake_openai, fake_anthropic):
    """Both session fakes with empty scripts and logs, before and after the test."""
    def clear():
        for fake in (fake_openai, fake_anthropic):
            fake.replies.clear()
            fake.received.clear()
            fake.client_disconnected.clear()
    clear()
    yield fake_openai, fake_anthropic
    clear()


@pytest.fixture(scope="module")
def priced(fake_openai, fake_anthropic):
    """A gateway (in this process, on loopback) over a catalog with explicit prices."""
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic)).start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server():
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required"
    workdir = tempfile.mkdtemp(prefix="mm-mkt-redis-")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, "redis-server exited at startup"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    with postgres_server("marketplace") as url:
        yield url
