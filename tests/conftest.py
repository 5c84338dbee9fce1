"""Shared fixtures: fake upstreams and one gateway in front of them and the bundled model."""

from __future__ import annotations

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import GatewayServer

UPSTREAM_KEY = "sk-upstream-test"


@pytest.fixture(scope="session")
def fake_openai():
    server = FakeOpenAI(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic():
    server = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture(autouse=False)
def fakes(fake_openai, fake_anthropic):
    """Both fakes with empty scripts and logs, for tests that script replies."""
    for fake in (fake_openai, fake_anthropic):
        fake.replies.clear()
        fake.received.clear()
        fake.client_disconnected.clear()
    yield fake_openai, fake_anthropic


def gateway_catalog(fake_openai, fake_anthropic) -> dict:
    return {
        "models": {
            # Real list prices come from the shipped price book (openai/gpt-4o-mini,
            # anthropic/claude-sonnet-4-5); the customer pays cost + 50%.
            "gpt-fake": {"provider": "openai", "model": "gpt-4o-mini",
                         "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY,
                         "price": {"markup": "0.5"}, "retries": {"attempts": 1}},
            "claude-fake": {"provider": "anthropic", "model": "claude-sonnet-4-5",
                            "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY,
                            "price": {"markup": "0.5"}, "retries": {"attempts": 1}},
        }
    }


@pytest.fixture(scope="session")
def gateway(fake_openai, fake_anthropic):
    server = GatewayServer(gateway_catalog(fake_openai, fake_anthropic),
                           max_body_bytes=1024 * 1024).start()
    yield server
    server.stop()
