"""One HTTP/1.1 connection of ``server.py`` (``Connection``, an asyncio protocol parsed by
``httptools``) and the request/response cycle it hands to the ASGI app (``Cycle``):
keep-alive, pipelining, ``Expect: 100-continue``, flow control both ways, a disconnect as
``http.disconnect`` (and the ``modelmart.disconnect`` extension), a 500 when the app fails
before replying. A reply sent in one body message leaves in one write with a
``content-length``; a streamed one is chunked, one write per event-loop iteration."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote

import httptools

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("modelmart.server")
access = logging.getLogger("modelmart.access")

_MAX_HEAD = 64 * 1024          # bytes of request line and headers
_BODY_HIGH_WATER = 1 << 20     # unread request body before the socket stops being read
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_DISCONNECT_MESSAGE = {"type": "http.disconnect"}
_DISCONNECT = "modelmart.disconnect"  # the extension (api/http.py)
_PLAIN_500 = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
              b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error")


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


_STATUS_LINES = {s: _status_line(s) for s in _REASONS}


class Cycle:
    """One request and its response."""

    __slots__ = ("conn", "scope", "body", "body_done", "waiter", "started", "finished",
                 "chunked", "head", "keep_alive", "status", "disconnected", "sent_bytes",
                 "t0", "head_only", "unsent", "flush_due", "on_disconnect")

    def __init__(self, conn: "Connection", scope: dict, keep_alive: bool) -> None:
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
            append = lines.append
            for name, value in message.get("headers", ()):
                if name[:1] in b"cC":  # only content-length and connection matter here
                    lname = name.lower()
                    if lname == b"content-length":
                        self.chunked = False
                    elif lname == b"connection" and value.lower() == b"close":
                        self.keep_alive = False
                append(name)
                append(b": ")
                append(value)
                append(b"\r\n")
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


class Connection(asyncio.Protocol):
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
        self.cycle: Cycle | None = None       # the one being parsed
        self.current: Cycle | None = None     # the one the app is answering
        self.buffered = 0                      # request body bytes not yet received by the app
        self.pipeline: deque[Cycle] = deque()  # parsed, waiting for the app
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
            "type": "http", "asgi": ASGI_VERSION, "http_version": self.parser.get_http_version(),
            "server": self.local, "client": self.client, "scheme": "http",
            "method": self.parser.get_method().decode("ascii"), "root_path": "",
            "path": path, "raw_path": raw_path, "query_string": parsed.query or b"",
            "headers": self.headers, "extensions": None,
        }
        cycle = Cycle(self, scope, self.parser.should_keep_alive())
        extension = {"watch": cycle.watch, "task": self.task}
        scope["extensions"] = {_DISCONNECT: extension}
        cycle.t0 = self.loop.time()
        self.cycle = cycle
        if self.expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.idle_waiter is not None and not self.idle_waiter.done():
            self.idle_waiter.set_result(cycle)  # the connection's task waits for it
        elif self.task is None:
            self.task = extension["task"] = self.loop.create_task(self._run(cycle))
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
    async def _run(self, cycle: Cycle) -> None:
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

    def _app_failed(self, cycle: Cycle, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) and (cycle.disconnected or self.server.stopping):
            self._close()
            return
        log.error("the app failed on %s %s", cycle.scope["method"], cycle.scope["path"],
                  exc_info=exc)
        if not cycle.started:
            self._write_500()
        self._close()

    def _log(self, cycle: Cycle) -> None:
        s = cycle.scope
        access.info('%s - "%s %s HTTP/%s" %d %d %.1fms', (self.client or ("-",))[0], s["method"],
                    s["path"], s["http_version"], cycle.status, cycle.sent_bytes,
                    (self.loop.time() - cycle.t0) * 1000)

    def response_done(self, cycle: Cycle) -> None:
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
