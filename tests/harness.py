"""Run a real modelmart server (``modelmart.server``, or uvicorn; loopback, a free port) in a
background thread, with its own SQLite database, journal and a customer key."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path

from modelmart.api.app import create_app
from modelmart.server import Server
from modelmart.api.settings import Settings
from modelmart.catalog.loader import parse_catalog
from modelmart.store.base import open_store
from modelmart.tenancy import accounts
from tests.fakes.script import free_port


async def _provision(url: str, customer: str, key_options: dict):
    store = await open_store(url)
    try:
        if await store.get_customer(customer) is None:
            await accounts.create_customer(store, customer)
        return await accounts.create_key(store, customer, **key_options)
    finally:
        await store.close()


def provision_key(url: str, customer: str = "acme", **key_options) -> str:
    """Create (if needed) a customer and a new key for it; returns the secret."""
    return asyncio.run(_provision(url, customer, key_options))[1]


def provision_aws_key(url: str, customer: str = "acme", **key_options) -> tuple[str, str]:
    """A key with an AWS access key id and secret (for boto3); returns both."""
    key, _ = asyncio.run(_provision(url, customer, {**key_options, "aws": True}))
    return key.aws_access_key_id, key.aws_secret


class GatewayServer:
    """The gateway on loopback, served by modelmart's own server or (``server="uvicorn"``)
    by uvicorn."""

    def __init__(self, catalog_data: dict, *, database_url: str | None = None,
                 key_options: dict | None = None, server: str = "modelmart",
                 **settings) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="modelmart-test-")
        self.database_url = database_url or f"sqlite:///{Path(self.tmp.name) / 'mm.db'}"
        settings.setdefault("journal_dir", str(Path(self.tmp.name) / "journal"))
        settings.setdefault("key_poll_interval", 0.2)
        self.key = provision_key(self.database_url, **(key_options or {}))
        self.app = create_app(Settings(catalog=parse_catalog(catalog_data),
                                       database_url=self.database_url, **settings))
        self.port = free_port()
        if server == "uvicorn":
            import uvicorn

            self.server = uvicorn.Server(uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_config=None,
                log_level="warning", lifespan="on", proxy_headers=False, loop="asyncio"))
            self._thread = threading.Thread(target=self.server.run, daemon=True)
        else:
            self.server = Server(self.app, "127.0.0.1", self.port)
            self._thread = threading.Thread(target=self.server.run, args=(False,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_key(self, customer: str = "acme", **key_options) -> str:
        return provision_key(self.database_url, customer, **key_options)

    def new_aws_key(self, customer: str = "acme", **key_options) -> tuple[str, str]:
        return provision_aws_key(self.database_url, customer, **key_options)

    def start(self) -> "GatewayServer":
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.tmp.cleanup()
