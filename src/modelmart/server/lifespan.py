"""The ASGI lifespan protocol, run in a task of its own for the app's whole life."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .wire import ASGI_VERSION

log = logging.getLogger("modelmart.server")


class Lifespan:
    def __init__(self, app: Callable) -> None:
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.supported = True
        # What the app keeps in its lifespan scope's state; each request gets a copy.
        self.state: dict[str, Any] = {}

    async def _main(self) -> None:
        scope: dict[str, Any] = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except BaseException as exc:  # an app without lifespan support
            if not isinstance(exc, asyncio.CancelledError):
                log.debug("the app has no lifespan support (%r)", exc)
            self.supported = False
            await self.outbox.put({"type": "lifespan.unsupported"})

    async def startup(self) -> bool:
        self.task = asyncio.ensure_future(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message["type"] == "lifespan.startup.failed":
            log.error("startup failed: %s", message.get("message", ""))
            return False
        return True

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.task
