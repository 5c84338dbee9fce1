"""The fuzz run's servers and its tally: four fake upstreams (OpenAI, Anthropic, Bedrock,
Gemini) answering normally, one gateway in front of them, keys for every surface; at the
end a summary line and ``fuzz-summary.json`` in pytest's base temporary directory."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from modelmart.store.base import open_store
from modelmart.tenancy import accounts
from tests.conformance.providers import (
    ANTHROPIC_KEY, AWS_SECRET, GEMINI_KEY, MODEL, OPENAI_KEY, catalog, start_fakes,
)
from tests.harness import GatewayServer

from .client import Sender, Tally

EMBED_MODELS = ("fuzz-embed-openai", "fuzz-embed-gemini")
CHAT_MODELS = tuple(MODEL[p] for p in ("openai", "anthropic", "bedrock", "gemini"))
_TALLY: list[Tally] = []


def fuzz_catalog(fakes: dict) -> dict:
    data = catalog(fakes)
    cost = {"input": 0.02, "output": 0, "caching": False}
    data["models"]["fuzz-embed-openai"] = {
        "provider": "openai", "model": "text-embedding-3-small", "api_key": OPENAI_KEY,
        "base_url": f"{fakes['openai'].base_url}/v1", "cost": cost, "price": {"markup": "1"}}
    data["models"]["fuzz-embed-gemini"] = {
        "provider": "gemini", "model": "gemini-embedding-001", "api_key": GEMINI_KEY,
        "base_url": fakes["gemini"].base_url, "cost": cost, "price": {"markup": "1"}}
    return data


def _admin_key(url: str) -> str:
    async def make() -> str:
        store = await open_store(url)
        try:
            return await accounts.ensure_admin_key(store)
        finally:
            await store.close()
    return asyncio.run(make())


def _wait_for_key(gateway: GatewayServer, akid: str) -> None:
    deadline = time.monotonic() + 5
    while gateway.app.keys.by_aws_access_key_id(akid) is None:  # the key cache polls
        assert time.monotonic() < deadline, "the new AWS key was not picked up"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def tally(tmp_path_factory):
    t = Tally(secrets=(OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY, AWS_SECRET))
    _TALLY.append(t)
    yield t
    path = tmp_path_factory.getbasetemp() / "fuzz-summary.json"
    path.write_text(json.dumps(t.summary(), indent=2))


@pytest.fixture(scope="session")
def upstreams():
    fakes = start_fakes()
    yield fakes
    for fake in fakes.values():
        fake.stop()


# Limits and a budget on the keys, so every request also takes the metering paths
# (token estimates, rate-limit tickets, worst-case reservations) with whatever it asks for.
KEY_LIMITS = {"rpm": 10**9, "tpm": 10**15, "budget_usd": "100000"}


@pytest.fixture(scope="session")
def fuzz_gateway(upstreams):
    server = GatewayServer(fuzz_catalog(upstreams), key_poll_interval=0.05,
                           key_options=KEY_LIMITS).start()
    server.aws = server.new_aws_key(**KEY_LIMITS)
    _wait_for_key(server, server.aws[0])
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _forget_requests(upstreams):
    """The fakes log every request; thousands of them need not be kept."""
    yield
    for fake in upstreams.values():
        fake.received.clear()
        fake.replies.clear()


@pytest.fixture
def sender(fuzz_gateway, tally):
    s = Sender(fuzz_gateway.url, key=fuzz_gateway.key, aws=fuzz_gateway.aws)
    yield s
    alive = s.alive()
    s.close()
    tally.reconnects.update(s.reconnects)
    assert alive, "the gateway stopped answering /health"
    assert fuzz_gateway._thread.is_alive(), "the gateway's server thread died"


@pytest.fixture(scope="module")
def admin_gateway(upstreams):
    """A gateway of its own: the admin fuzz creates customers and revokes keys."""
    server = GatewayServer(fuzz_catalog(upstreams), key_poll_interval=0.05)
    server.admin_key = _admin_key(server.database_url)
    server.start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter):
    for t in _TALLY:
        s = t.summary()
        per = ", ".join(f"{name} {v['inputs']} ({v['seconds']} s)"
                        for name, v in s["surfaces"].items())
        terminalreporter.write_line(
            f"fuzz: {s['inputs']} inputs tried, {s['5xx']} 5xx, {s['problems']} problems "
            f"[{per}]")
