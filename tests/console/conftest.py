"""Console fixtures: a priced gateway (in this process, on loopback) with an admin key."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest

from tests.harness import GatewayServer
from tests.marketplace.helpers import ensure_admin_key, priced_catalog


@pytest.fixture(scope="module")
def gw(fake_openai, fake_anthropic):
    tmp = tempfile.TemporaryDirectory(prefix="mm-console-")
    db = f"sqlite:///{Path(tmp.name) / 'console.db'}"
    admin_key = ensure_admin_key(db)
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic), database_url=db).start()
    server.admin_key = admin_key
    # Tests sign in many times a minute from 127.0.0.1; the limit's own test lowers it.
    server.app.console.sessions.attempts_per_minute = 10_000
    yield server
    server.stop()
    tmp.cleanup()


@pytest.fixture
def scripted(fake_openai, fake_anthropic):
    for fake in (fake_openai, fake_anthropic):
        fake.replies.clear()
        fake.received.clear()
    yield fake_openai, fake_anthropic
    for fake in (fake_openai, fake_anthropic):
        fake.replies.clear()


def admin(gw, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{gw.url}/admin/v1{path}", timeout=10,
                         headers={"authorization": f"Bearer {gw.admin_key}"}, **kw)
