"""Run a real modelmart server (uvicorn, loopback, a free port) in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn

from modelmart.api.app import create_app
from modelmart.api.settings import Settings
from modelmart.catalog.loader import parse_catalog
from tests.fakes.script import free_port


class GatewayServer:
    def __init__(self, catalog_data: dict, **settings) -> None:
        self.app = create_app(Settings(catalog=parse_catalog(catalog_data), **settings))
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                http="httptools", loop="asyncio", lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
