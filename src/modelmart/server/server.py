"""The server: the listener, the lifespan, a sweep that enforces the timeouts, and the
graceful shutdown that lets requests in flight finish.

Why not uvicorn: behind a trivial app it costs ~27 µs of CPU a request against ~16 µs for
this one (``bench/experiments/transport_cost.py``), and the gateway is a thin layer, so the
server's share is large. It implements what the gateway and its clients need of ASGI 3
(``http`` and ``lifespan``); no WebSockets, no HTTP/2. ``modelmart serve --server
uvicorn`` runs the same app under uvicorn instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from typing import Callable

from .capacity import Connections
from .lifespan import Lifespan
from .limits import Limits
from .listener import Listener

log = logging.getLogger("modelmart.server")

_TICK = 0.1  # seconds between looks at the clock (the timeouts' resolution)


class Server:
    """Serve one ASGI app on ``host:port`` (or on ``sock``, an already bound socket).

    ``run()`` blocks (uvloop when installed); ``serve()`` is the coroutine; set
    ``should_exit`` (or send SIGINT/SIGTERM to a ``run()``) to stop: the listener closes,
    requests in flight get ``grace`` seconds to finish, then the app's lifespan shutdown
    runs. ``limits`` bounds what clients may take (``limits.Limits``).
    """

    def __init__(self, app: Callable, host: str = "127.0.0.1", port: int = 8000, *,
                 limits: Limits | None = None, access_log: bool = False,
                 reuse_port: bool = False, backlog: int = 4096, grace: float = 5.0,
                 lifespan: bool = True, root_path: str = "",
                 sock: socket.socket | None = None, handle_signals: bool = True) -> None:
        self.app, self.host, self.port, self.sock = app, host, port, sock
        self.limits = limits or Limits()
        self.access_log, self.reuse_port, self.backlog = access_log, reuse_port, backlog
        self.grace, self.lifespan, self.root_path = grace, lifespan, root_path
        # False for a second server in a process whose main one owns SIGINT/SIGTERM.
        self.handle_signals = handle_signals
        self.connections = Connections(self.limits.connection_cap(), self.limits.max_per_peer,
                                       lambda: self.now)
        self.header_kinds: dict[bytes, int] = {}  # response header names seen (wire.header_kind)
        self.state: dict = {}  # the lifespan's state; each request gets a copy
        self.extras = bool(root_path or access_log)  # connection._extras to do
        self.now = time.monotonic()  # the clock connections read, updated every tick
        self.started = False
        self.should_exit = False
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, use_uvloop: bool = True) -> None:
        if use_uvloop:
            try:
                import uvloop
            except ImportError:
                use_uvloop = False
        if use_uvloop:
            uvloop.run(self.serve())
        else:
            asyncio.run(self.serve())

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        lifespan = Lifespan(self.app) if self.lifespan else None
        if lifespan is not None:
            if not await lifespan.startup():
                raise SystemExit(3)
            self.state = lifespan.state
            self.extras = bool(self.extras or self.state)
        listener = Listener(self, self.sock)
        if self.port == 0:
            self.port = listener.sock.getsockname()[1]
        stop = asyncio.Event()
        if self.handle_signals:
            self._install_signals(stop)
        self.started = True
        every = self._sweep_interval()
        next_sweep = self.now + every
        try:
            while not self.should_exit and not stop.is_set():
                await asyncio.sleep(_TICK)
                self.now = now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + every
                    self.sweep()
        finally:
            self.stopping = True
            listener.close()
            await self._drain_requests()
            if lifespan is not None:
                await lifespan.shutdown()

    def _sweep_interval(self) -> float:
        limits = self.limits
        return max(_TICK, min(1.0, limits.header_timeout / 4, limits.body_timeout / 4,
                              limits.keepalive / 4, limits.send_timeout / 4, limits.linger / 2))

    def sweep(self) -> None:
        """Enforce every connection's timeouts (one pass instead of a timer per request)."""
        now = self.now
        for conn in self.connections:
            conn.check(now)

    def _install_signals(self, stop: asyncio.Event) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests): should_exit stops it

    async def _drain_requests(self) -> None:
        for conn in self.connections:
            if conn.idle():
                conn.evict()
        deadline = self.loop.time() + self.grace
        while not all(c.idle() for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in self.connections:
            if conn.task is not None:
                conn.task.cancel()
            conn.evict()
        await asyncio.sleep(0)
