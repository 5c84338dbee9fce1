"""Marketplace fixtures: the priced gateway, clean fake scripts, a real Redis, PostgreSQL."""

from __future__ import annotations


import pytest

from tests.harness import GatewayServer
from tests.marketplace.helpers import priced_catalog
from tests.pg import postgres_server
from tests.redis_server import redis_server as start_redis


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


@pytest.fixture(scope="session")
def redis_server():
    with start_redis() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url():
    with postgres_server("marketplace") as url:
        yield url
