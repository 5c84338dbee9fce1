"""A lean HTTP/1.1 server for ASGI apps: asyncio protocols parsed by ``httptools`` (llhttp).

Why not uvicorn: behind a trivial app it costs ~27 µs of CPU a request against ~16 µs for
this one (``bench/experiments/transport_cost.py``), and the gateway is a thin layer, so the
server's share is large. A reply sent in one ASGI body message goes out in one
``transport.write`` with a ``content-length``; a streamed one is chunked.

It implements what the gateway and its clients need of ASGI 3 (``http`` and ``lifespan``);
this module is the listener, the lifespan, the idle timeout and the graceful shutdown that
lets requests in flight finish; ``api/connection.py`` is one connection and its requests.
No WebSockets, no HTTP/2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from typing import Any, Callable

from .connection import ASGI_VERSION, Connection

log = logging.getLogger("modelmart.server")

_KEEPALIVE = 75.0  # seconds an idle connection stays open (nginx's default)


class Server:
    """Serve one ASGI app on ``host:port`` (or an already bound socket).

    ``run()`` blocks (uvloop when installed); ``serve()`` is the coroutine; set
    ``should_exit`` (or send SIGINT/SIGTERM to a ``run()``) to stop: the listener closes,
    requests in flight get ``grace`` seconds to finish, then the app's lifespan shutdown runs.
    """

    def __init__(self, app: Callable, host: str = "127.0.0.1", port: int = 8000, *,
                 access_log: bool = False, reuse_port: bool = False, backlog: int = 4096,
                 grace: float = 5.0, keepalive: float = _KEEPALIVE, lifespan: bool = True) -> None:
        self.app, self.host, self.port = app, host, port
        self.access_log, self.reuse_port, self.backlog = access_log, reuse_port, backlog
        self.grace, self.keepalive, self.lifespan = grace, keepalive, lifespan
        self.connections: set[Connection] = set()
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
        lifespan = _Lifespan(self.app) if self.lifespan else None
        if lifespan is not None and not await lifespan.startup():
            raise SystemExit(3)
        server = _Listener(self)
        if self.port == 0:
            self.port = server.sock.getsockname()[1]
        stop = asyncio.Event()
        self._install_signals(stop)
        self.started = True
        try:
            while not self.should_exit and not stop.is_set():
                await asyncio.sleep(0.1)
                self._close_idle()
        finally:
            self.stopping = True
            server.close()
            await self._drain_requests()
            if lifespan is not None:
                await lifespan.shutdown()

    def _install_signals(self, stop: asyncio.Event) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests): should_exit stops it

    _last_sweep = 0.0

    def _close_idle(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        cutoff = now - self.keepalive
        for conn in list(self.connections):
            if conn.idle() and conn.idle_since < cutoff:
                conn._close()

    async def _drain_requests(self) -> None:
        for conn in list(self.connections):
            if conn.idle():
                conn._close()
        deadline = self.loop.time() + self.grace
        while not all(c.idle() for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.task is not None:
                conn.task.cancel()
            conn._close()
        await asyncio.sleep(0)


_ACCEPT_BATCH = 512  # connections taken from the listen queue per readiness, at most


class _Listener:
    """The listening socket. Every connection waiting is accepted when it becomes readable:
    the event loop's own servers (uvloop's included) accept one connection per loop
    iteration, and under load an iteration is long, so 256 clients connecting at once
    waited seconds in the listen queue (their first requests' latency)."""

    def __init__(self, server: Server) -> None:
        self.server, self.loop = server, server.loop
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        self.sock = socket.create_server((server.host, server.port), family=family,
                                         backlog=server.backlog,
                                         reuse_port=bool(server.reuse_port))
        self.sock.setblocking(False)
        self._factory = lambda: Connection(server)
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of file descriptors, most likely: pause, not spin
                log.error("accepting a connection failed: %s; pausing for 0.5 s", exc)
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(0.5, self._resume)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.loop.create_task(self._adopt(conn))

    def _resume(self) -> None:
        if self.sock.fileno() != -1:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self._factory, sock=conn)
        except OSError:
            conn.close()

    def close(self) -> None:
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class _Lifespan:
    """The ASGI lifespan protocol, run in a task of its own for the app's whole life."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.supported = True

    async def _main(self) -> None:
        scope: dict[str, Any] = {"type": "lifespan", "asgi": ASGI_VERSION, "state": {}}
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
