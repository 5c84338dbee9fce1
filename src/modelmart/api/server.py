"""A lean HTTP/1.1 server for ASGI apps: asyncio protocols parsed by ``httptools`` (llhttp).

Why not uvicorn: behind a trivial app it costs ~27 µs of CPU a request against ~16 µs for
this one (``bench/experiments/transport_cost.py``), and the gateway is a thin layer, so the
server's share is large. A reply sent in one ASGI body message goes out in one
``transport.write`` with a ``content-length``; a streamed one is chunked.

It implements what the gateway and its clients need of ASGI 3 (``http`` and ``lifespan``):
keep-alive, pipelining, ``Expect: 100-continue``, flow control both ways, a disconnect as
``http.disconnect``, a 500 when the app fails before replying, an idle timeout, and a
graceful shutdown that lets requests in flight finish. No WebSockets, no HTTP/2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections import deque
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import unquote

import httptools

log = logging.getLogger("modelmart.server")
access = logging.getLogger("modelmart.access")

_MAX_HEAD = 64 * 1024          # bytes of request line and headers
_BODY_HIGH_WATER = 1 << 20     # unread request body before the socket stops being read
_KEEPALIVE = 75.0              # seconds an idle connection stays open (nginx's default)
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_DISCONNECT_MESSAGE = {"type": "http.disconnect"}
_DISCONNECT = "modelmart.disconnect"  # the extension (api/http.py)
_PLAIN_500 = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
              b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error")


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


_STATUS_LINES = {s: _status_line(s) for s in _REASONS}


class _Cycle:
    """One request and its response."""

    __slots__ = ("conn", "scope", "body", "body_done", "waiter", "started", "finished",
                 "chunked", "head", "keep_alive", "status", "disconnected", "sent_bytes",
                 "t0", "head_only", "unsent", "flush_due", "on_disconnect")

    def __init__(self, conn: "_Connection", scope: dict, keep_alive: bool) -> None:
        self.conn, self.scope, self.keep_alive = conn, scope, keep_alive
        self.body: list[bytes] = []
        self.body_done = False
        self.waiter: asyncio.Future | None = None
        self.started = self.finished = self.chunked = self.disconnected = False
        self.head = b""
        self.status = 0
        self.sent_bytes = 0
        self.t0 = 0.0
        self.head_only = scope["method"] == "HEAD"
        self.unsent: list[bytes] = []  # streamed body bytes not yet written
        self.flush_due = False
        self.on_disconnect: Callable[[], None] | None = None

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """The ``modelmart.disconnect`` extension (``api/http.py``): ``callback()`` once when
        the client goes away; returns the function that stops watching."""
        if self.disconnected:
            self.conn.loop.call_soon(callback)
        else:
            self.on_disconnect = callback
        return self._unwatch

    def _unwatch(self) -> None:
        self.on_disconnect = None

    def gone(self) -> None:
        self.disconnected = True
        self.wake()
        callback, self.on_disconnect = self.on_disconnect, None
        if callback is not None:
            callback()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self.waiter = self.conn.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def receive(self) -> dict:
        if self.body is None:
            # The whole body was handed over: the next message is the client going away.
            while not self.disconnected:
                await self._wait()
            return _DISCONNECT_MESSAGE
        while not self.body and not self.body_done and not self.disconnected:
            await self._wait()
        if self.disconnected:
            return _DISCONNECT_MESSAGE
        chunks = self.body
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.body_done:
            self.body = None
            return {"type": "http.request", "body": data, "more_body": False}
        self.body = []
        self.conn.body_consumed()
        return {"type": "http.request", "body": data, "more_body": True}

    async def send(self, message: dict) -> None:
        kind = message["type"]
        conn = self.conn
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = status = message["status"]
            lines = [_STATUS_LINES.get(status) or _status_line(status)]
            self.chunked = True
            for name, value in message.get("headers", ()):
                lname = name.lower()
                if lname == b"content-length":
                    self.chunked = False
                elif lname == b"connection" and value.lower() == b"close":
                    self.keep_alive = False
                lines.append(b"%s: %s\r\n" % (name, value))
            if not self.keep_alive:
                lines.append(b"connection: close\r\n")
            self.head = b"".join(lines)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("http.response.body before http.response.start")
        if self.finished:
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.head_only:
            body = b""
        if self.disconnected or conn.transport is None:
            if not more:
                self.finished = True
            return
        head = self.head
        if head:
            self.head = b""
            if self.chunked and not more:  # the whole body in one message: give its length
                self.chunked = False
                head += b"content-length: %d\r\n" % len(body)
            elif self.chunked:
                head += b"transfer-encoding: chunked\r\n"
            head += b"\r\n"
        if self.chunked:
            out = head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"")
            if not more:
                out += b"0\r\n\r\n"
        else:
            out = head + body if head else body
        self.sent_bytes += len(body)
        if more:
            # Held to the end of this loop iteration: what else the app sends meanwhile (the
            # next events of one upstream read, the stream's end) leaves in the same write.
            if out:
                self.unsent.append(out)
                if not self.flush_due:
                    self.flush_due = True
                    conn.loop.call_soon(self.flush)
            if conn.write_paused:
                self.flush()
                await conn.drain()
            return
        self.finished = True
        if self.unsent:
            self.unsent.append(out)
            out = b"".join(self.unsent)
            self.unsent.clear()
        if out:
            conn.transport.write(out)
        conn.response_done(self)

    def flush(self) -> None:
        self.flush_due = False
        if self.unsent:
            data = b"".join(self.unsent)
            self.unsent.clear()
            if self.conn._writable():
                self.conn.transport.write(data)


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "loop", "transport", "parser", "url", "headers", "head_bytes",
                 "cycle", "current", "pipeline", "task", "idle_waiter", "buffered",
                 "write_paused", "drain_waiter", "read_paused", "idle_since", "client", "local",
                 "expect_continue")

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list = []
        self.head_bytes = 0
        self.cycle: _Cycle | None = None       # the one being parsed
        self.current: _Cycle | None = None     # the one the app is answering
        self.buffered = 0                      # request body bytes not yet received by the app
        self.pipeline: deque[_Cycle] = deque()  # parsed, waiting for the app
        self.task: asyncio.Task | None = None   # the app, running one cycle after another
        self.idle_waiter: asyncio.Future | None = None  # the task, idle, waits on it
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.read_paused = False
        self.idle_since = time.monotonic()
        self.expect_continue = False

    # ---- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client = transport.get_extra_info("peername")
        self.local = transport.get_extra_info("sockname")
        if isinstance(self.client, tuple):
            self.client = self.client[:2]
        if isinstance(self.local, tuple):
            self.local = self.local[:2]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"Upgrades are not supported.")
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised: the head-size check is one of those.
            if self.head_bytes > _MAX_HEAD:
                self._reject(431, b"Request headers are too large.")
            else:
                self._reject(400, f"Malformed HTTP request: {exc}".encode())

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.server.connections.discard(self)
        for cycle in (self.current, self.cycle, *self.pipeline):
            if cycle is not None:
                cycle.gone()
        if self.idle_waiter is not None and not self.idle_waiter.done():
            self.idle_waiter.cancel()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # ---- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > _MAX_HEAD:
            raise ValueError("request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > _MAX_HEAD:
            raise ValueError("request head too large")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope = {
            "type": "http", "asgi": _ASGI, "http_version": self.parser.get_http_version(),
            "server": self.local, "client": self.client, "scheme": "http",
            "method": self.parser.get_method().decode("ascii"), "root_path": "",
            "path": path, "raw_path": raw_path, "query_string": parsed.query or b"",
            "headers": self.headers, "extensions": None,
        }
        cycle = _Cycle(self, scope, self.parser.should_keep_alive())
        scope["extensions"] = {_DISCONNECT: {"watch": cycle.watch}}
        cycle.t0 = self.loop.time()
        self.cycle = cycle
        if self.expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.idle_waiter is not None and not self.idle_waiter.done():
            self.idle_waiter.set_result(cycle)  # the connection's task waits for it
        elif self.task is None:
            self.task = self.loop.create_task(self._run(cycle))
        else:
            self.pipeline.append(cycle)
            # One request at a time: read no further until the app is done with this one.
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        cycle.body.append(body)
        self.buffered += len(body)
        if self.buffered > _BODY_HIGH_WATER:
            self._pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        cycle.body_done = True
        cycle.wake()

    # ---- the app -----------------------------------------------------------------------
    async def _run(self, cycle: _Cycle) -> None:
        app = self.server.app
        while cycle is not None:
            self.current = cycle
            self.buffered = 0
            try:
                await app(cycle.scope, cycle.receive, cycle.send)
            except BaseException as exc:
                self._app_failed(cycle, exc)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
            else:
                if not cycle.finished:
                    if cycle.started or cycle.disconnected:
                        self._close()
                    else:
                        log.error("the app returned without a response: %s %s",
                                  cycle.scope["method"], cycle.scope["path"])
                        self._write_500()
            if self.server.access_log:
                self._log(cycle)
            if self.transport is None or not cycle.keep_alive or not cycle.finished:
                self._close()
                break
            self._resume_reading()
            if self.pipeline:
                cycle = self.pipeline.popleft()
                continue
            # Keep-alive: this task waits for the connection's next request rather than
            # ending and a new one starting for it (a task costs more than a future).
            self.current = None
            self.idle_since = time.monotonic()
            self.idle_waiter = self.loop.create_future()
            try:
                cycle = await self.idle_waiter
            except asyncio.CancelledError:
                break  # the connection closed while idle, or the server is stopping
            finally:
                self.idle_waiter = None
        self.current = None
        self.task = None

    def idle(self) -> bool:
        """No request being answered or handed over to the connection's task."""
        waiter = self.idle_waiter
        return self.current is None and not self.pipeline and (waiter is None or not waiter.done())

    def _app_failed(self, cycle: _Cycle, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) and (cycle.disconnected or self.server.stopping):
            self._close()
            return
        log.error("the app failed on %s %s", cycle.scope["method"], cycle.scope["path"],
                  exc_info=exc)
        if not cycle.started:
            self._write_500()
        self._close()

    def _log(self, cycle: _Cycle) -> None:
        s = cycle.scope
        access.info('%s - "%s %s HTTP/%s" %d %d %.1fms', (self.client or ("-",))[0], s["method"],
                    s["path"], s["http_version"], cycle.status, cycle.sent_bytes,
                    (self.loop.time() - cycle.t0) * 1000)

    def response_done(self, cycle: _Cycle) -> None:
        if self.cycle is cycle and not cycle.body_done:
            # The reply went out before the request body was read: the connection's
            # remaining bytes can't be trusted as the next request.
            cycle.keep_alive = False

    async def drain(self) -> None:
        if self.write_paused and self.transport is not None:
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None

    def body_consumed(self) -> None:
        self.buffered = 0
        if self.read_paused and not self.pipeline:
            self._resume_reading()

    # ---- helpers -----------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def _writable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def _write_500(self) -> None:
        if self._writable():
            self.transport.write(_PLAIN_500)
        self._close()

    def _reject(self, status: int, message: bytes) -> None:
        if self._writable():
            self.transport.write(_STATUS_LINES.get(status, _status_line(status))
                                 + b"content-type: text/plain; charset=utf-8\r\n"
                                 + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(message)
                                 + message)
        self._close()

    def _close(self) -> None:
        if self._writable():
            if self.current is not None:
                self.current.flush()  # a stream's last events, before an error ended it
            self.transport.close()


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
        self.connections: set[_Connection] = set()
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
        server = await self.loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=self.backlog,
            reuse_port=self.reuse_port or None)
        if self.port == 0:
            self.port = server.sockets[0].getsockname()[1]
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


class _Lifespan:
    """The ASGI lifespan protocol, run in a task of its own for the app's whole life."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.supported = True

    async def _main(self) -> None:
        scope: dict[str, Any] = {"type": "lifespan", "asgi": _ASGI, "state": {}}
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


def bind_check(host: str, port: int) -> None:
    """Fail fast (OSError) when ``host:port`` can't be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


# ---- several workers ------------------------------------------------------------------------

def serve_workers(workers: int, host: str, port: int, *, access_log: bool = False,
                  grace: float = 5.0, log_level: str = "info") -> int:
    """Run ``workers`` processes, each serving ``app_from_env()`` on its own listener bound
    with SO_REUSEPORT, so the kernel spreads connections over them. A worker that dies is
    started again; SIGINT/SIGTERM stop them all (each finishes its requests in flight)."""
    import subprocess
    import sys

    bind_check(host, port)  # fail here, once, rather than in every worker
    argv = [sys.executable, "-m", "modelmart.api.server", "--host", host, "--port", str(port),
            "--grace", str(grace), "--log-level", log_level] + (
                ["--access-log"] if access_log else [])
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    started: list[float] = []
    failed_fast = False
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen(argv))
            started.append(time.monotonic())
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(procs):
                code = proc.poll()
                if code is None or stopping:
                    continue
                if time.monotonic() - started[i] < 5:
                    log.error("worker %d exited at startup (code %s): stopping", proc.pid, code)
                    failed_fast = stopping = True
                    break
                log.error("worker %d exited (code %s): starting another", proc.pid, code)
                procs[i], started[i] = subprocess.Popen(argv), time.monotonic()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed_fast else 0


def _worker_main() -> None:
    """One worker of ``serve_workers``: ``python -m modelmart.api.server --host H --port P``."""
    import argparse

    from .app import app_from_env

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    Server(app_from_env(), args.host, args.port, access_log=args.access_log, reuse_port=True,
           grace=args.grace).run()


if __name__ == "__main__":
    _worker_main()
