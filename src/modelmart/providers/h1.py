"""A lean HTTP/1.1 client for upstream calls: pooled keep-alive connections on asyncio
protocols, parsed by ``httptools`` (llhttp, in C).

Why not aiohttp's client: it costs ~92 µs of CPU per request against ~14 µs for this one (a
POST with a small JSON reply over a kept-alive loopback connection, measured with
``bench/experiments/transport_cost.py``); the gateway makes one upstream call per request,
so that difference was a fifth of all it spent.
It does only what an LLM upstream needs: POST/GET with a body, HTTP/1.1 keep-alive, TLS,
HTTP proxies (``connect.py``), fixed-length, chunked and read-to-close bodies, gzip/deflate
replies, and a single timer per wait for the caller's deadlines. No cookies or redirects.

What an upstream sends is bounded (``UpstreamLimits``): the reply head's bytes and lines, the
body (decompressed), all checked as bytes arrive, in time linear in what was received. A
reply over a bound fails with ``LimitExceeded`` and its connection is dropped.
It is the default transport behind the seam in ``transport.py``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque

import httptools

from .base import UpstreamLimits
from .connect import Target, environment_proxies, only_proxy, open_connection, tls_context

_MAX_BUFFER = 1 << 20  # a stream's unread bytes before the socket stops being read
# Seconds an idle connection may wait in the pool: under the 5 s keep-alive of uvicorn-based
# servers (vLLM and others), so the pool rarely offers one the server is closing.
_IDLE_EXPIRY = 4.0


class HTTPClosed(ConnectionError):
    """The upstream closed the connection before the reply was complete."""


class HTTPMalformed(ConnectionError):
    """The upstream's bytes are not an HTTP/1.1 reply."""


class DeadlineExceeded(TimeoutError):
    """A wait armed with a deadline did not finish in time; ``args[0]`` says which one."""


class LimitExceeded(ConnectionError):
    """The upstream sent more than a bound allows: ``args`` are the ``UpstreamLimits``
    field's name and its value."""

    def __init__(self, field: str, limit: int) -> None:
        super().__init__(field, limit)
        self.field, self.limit = field, limit

    def __str__(self) -> str:
        return f"the reply is over limits.{self.field}={self.limit}"


class HeaderBlock:
    """Request headers checked and encoded once: a deployment's fixed ones (its key, its
    content type), reused by every call instead of encoded again each time."""

    __slots__ = ("raw", "names")

    def __init__(self, headers: dict[str, str]) -> None:
        lines = []
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"a line break in the upstream header {name!r}")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        self.raw = b"".join(lines)
        self.names = frozenset(name.lower() for name in headers)

    def with_headers(self, extra: dict[str, str]) -> "HeaderBlock":
        """These headers and ``extra`` (a trace's ``traceparent``, api/tracing.py)."""
        more = HeaderBlock(extra)
        block = HeaderBlock({})
        block.raw, block.names = self.raw + more.raw, self.names | more.names
        return block


class Reply:
    """An upstream reply: status and headers at once, the body by ``read()`` or ``chunks()``."""

    __slots__ = ("status", "headers", "_conn")

    def __init__(self, conn: "_Connection", status: int, headers: dict[str, str]) -> None:
        self._conn, self.status, self.headers = conn, status, headers

    async def read(self, deadline: float | None = None, why: str = "") -> bytes:
        """The whole body (waiting at most until loop time ``deadline``)."""
        conn = self._conn
        while not conn.complete:
            await conn.wait(deadline, why)
        data = conn.take()
        self.release()
        return data

    async def next_chunk(self, deadline: float | None = None, why: str = "") -> bytes:
        """What has arrived since the last call (waiting for some if nothing has); b"" at the
        end of the body."""
        conn = self._conn
        conn.streaming = True
        while not conn.buffered and not conn.complete:
            await conn.wait(deadline, why)
        data = conn.take()
        if not data and conn.complete:
            self.release()
        return data

    def release(self) -> None:
        """Give the connection back to the pool if the reply was read to its end and the
        connection may be reused; close it otherwise."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish()

    def close(self) -> None:
        """Drop the connection (an unread stream: the upstream sees the hang-up)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one request at a time."""

    def __init__(self, pool: "Client", key: tuple) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.loop = asyncio.get_running_loop()
        self.idle_since = 0.0
        limits = pool.limits
        self.max_head, self.max_headers = limits.header_bytes, limits.headers
        self.max_body = limits.body_bytes
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.repeated: dict[str, list[str]] | None = None  # headers sent more than once
        self.head_bytes = 0
        self.head_lines = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received = 0  # bytes of this reply so far
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.inflate = None
        self.paused = False
        self.streaming = False  # read chunk by chunk: bound what waits unread
        self.interim = False  # parsing a 1xx reply

    # ---- protocol callbacks -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HTTPMalformed("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(HTTPMalformed(f"malformed HTTP reply ({exc})"))  # unless over a limit
        if not self.head_done and self.received > self.max_head:
            # Checked here too: llhttp hands over a header only once it is whole, and
            # gathers a long one piece by piece until then.
            self._fail(LimitExceeded("header_bytes", self.max_head))

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.pool._forget(self)
        if self.complete:
            return
        if self.head_done and self._reads_to_close():
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        what = "in the middle of the reply" if self.head_done else "before replying"
        self._fail(HTTPClosed(f"the upstream closed the connection {what}"))

    def eof_received(self):
        return False  # close our side too

    def pause_writing(self) -> None:  # bodies are small; the kernel buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # ---- httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_lines += 1
        self.head_bytes += len(name) + len(value)
        if self.head_lines > self.max_headers:
            self._over("headers", self.max_headers)
        if self.head_bytes > self.max_head:
            self._over("header_bytes", self.max_head)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.headers
        if key not in headers:
            headers[key] = text
            return
        # Joined once the head is complete: joining at each repeat is quadratic.
        if self.repeated is None:
            self.repeated = {}
        values = self.repeated.get(key)
        if values is None:
            self.repeated[key] = [headers[key], text]
        else:
            values.append(text)

    def on_headers_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            # An interim reply (100 Continue, 103 Early Hints): the real one follows.
            self.interim = True
            self.headers = {}
            self.repeated = None
            return
        if self.repeated is not None:
            for key, values in self.repeated.items():
                self.headers[key] = ", ".join(values)
            self.repeated = None
        self.head_done = True
        encoding = self.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.inflate = zlib.decompressobj()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.inflate is not None:
            # Never more than one byte past the bound, however much this inflates to.
            body = self.inflate.decompress(body, self.max_body - self.buffered + 1)
            if not body:
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > self.max_body:
            self._over("body_bytes", self.max_body)
        if (self.streaming and self.buffered > _MAX_BUFFER and not self.paused
                and self.transport is not None):
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.inflate is not None:
            rest = self.inflate.flush()
            if rest:
                self.chunks.append(rest)
                self.buffered += len(rest)
                if self.buffered > self.max_body:  # not raised: may run from connection_lost
                    self._fail(LimitExceeded("body_bytes", self.max_body))
                    self.chunks = []
                    return
        self.complete = True
        # Asked here: once feed_data returns, llhttp has moved on and answers False.
        self.keep_alive = self.transport is not None and self.parser.should_keep_alive()
        self._wake()

    # ---- the caller's side --------------------------------------------------------------
    def _reads_to_close(self) -> bool:
        h = self.headers
        return "content-length" not in h and "chunked" not in h.get("transfer-encoding", "")

    def _over(self, field: str, limit: int) -> None:
        """Fail the reply and stop the parser: the rest of what arrived is not looked at."""
        exc = LimitExceeded(field, limit)
        self._fail(exc)
        self.chunks = []
        raise exc

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    async def wait(self, deadline: float | None, why: str) -> None:
        """Wait for the next callback (head, body bytes, end); raise the connection's error,
        or ``DeadlineExceeded(why)`` if loop time ``deadline`` passes first."""
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.loop.create_future()
        timer = None
        if deadline is not None:
            timer = self.loop.call_at(deadline, self._expire, waiter, why)
        try:
            await waiter
        except asyncio.CancelledError:
            self.abort()  # a caller that gives up leaves the reply half read
            raise
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: asyncio.Future, why: str) -> None:
        if not waiter.done():
            self._fail(DeadlineExceeded(why))

    def take(self) -> bytes:
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def send(self, head: bytes, body: bytes) -> None:
        self._reset()
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    def finish(self) -> None:
        if (self.complete and self.error is None and self.transport is not None
                and not self.transport.is_closing() and self.keep_alive):
            self.pool._put_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.pool._forget(self)


class Client:
    """Keep-alive connection pools, one per (scheme, host, port). Not thread-safe: one per
    event loop.

    ``proxies`` maps schemes to proxy URLs as ``urllib.request.getproxies()`` does (the
    default: read from the environment now); ``limits`` bound what upstreams send. A
    deployment with TLS, proxy or limit settings of its own gets a client of its own from
    ``for_config`` (made once, closed with this one)."""

    def __init__(self, max_idle_per_host: int = 512, tls: ssl.SSLContext | None = None, *,
                 limits: UpstreamLimits | None = None,
                 proxies: dict[str, str] | None = None) -> None:
        self.max_idle = max_idle_per_host
        self.limits = limits or UpstreamLimits()
        self._proxies = environment_proxies() if proxies is None else proxies
        self._idle: dict[tuple, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._targets: dict[str, Target] = {}
        self._tls = tls  # None: the system's trust store, made at the first https call
        self._children: dict[tuple, Client] = {}
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def for_config(self, cfg) -> "Client":
        """The client for a deployment's ``ProviderConfig``: this one, unless the deployment
        sets its own TLS trust, proxy or limits."""
        if cfg.tls is None and cfg.proxy is None and cfg.limits == self.limits:
            return self
        key = (cfg.tls, cfg.proxy, cfg.limits)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = Client(
                self.max_idle, tls_context(cfg.tls) if cfg.tls is not None else self._tls,
                limits=cfg.limits,
                proxies=self._proxies if cfg.proxy is None else only_proxy(cfg.proxy))
            child._loop = self._loop
        return child

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this client lives on (known from its first use). Kept, because
        ``asyncio.get_running_loop()`` costs a system call (getpid) on Python 3.11."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 4096:
                self._targets.clear()
            target = self._targets[url] = Target(url, self._proxies)
        return target

    async def request(self, method: str, url: str, headers: dict[str, str] | HeaderBlock,
                      body: bytes, *,
                      connect_timeout: float, deadline: float | None = None,
                      why: str = "") -> Reply:
        """Send the request and wait (until loop time ``deadline``) for the reply's status and
        headers.

        A request that fails is never sent again here, not even on a kept-alive connection
        that turns out closed: the upstream may have received it, and a model call is not
        idempotent (the router decides about retries). Idle connections the upstream closes
        leave the pool as soon as the close arrives, and none is reused after
        ``_IDLE_EXPIRY`` seconds, which keeps that race rare."""
        target = self.target(url)
        head = self._head(method, target, headers, body)
        conn = self._pooled(target.key)
        if conn is None:
            conn = await self._connect(target, connect_timeout)
        conn.send(head, body)
        while not conn.head_done:
            await conn.wait(deadline, why)
        return Reply(conn, conn.parser.get_status_code(), conn.headers)

    @staticmethod
    def _head(method: str, target: Target, headers: dict[str, str] | HeaderBlock,
              body: bytes) -> bytes:
        path, lines, lines_with_host = target.head
        if type(headers) is not HeaderBlock:
            headers = HeaderBlock(headers)
        return b"%s %s HTTP/1.1\r\n%s%scontent-length: %d\r\n\r\n" % (
            method.encode(), path, lines_with_host if "host" in headers.names else lines,
            headers.raw, len(body))

    def _pooled(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        cutoff = time.monotonic() - _IDLE_EXPIRY
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest still open
            if conn.transport is not None and not conn.transport.is_closing() \
                    and conn.idle_since > cutoff:
                return conn
            conn.abort()
        return None

    async def _connect(self, target: Target, timeout: float) -> _Connection:
        if self.closed:
            raise RuntimeError("the upstream client is closed")
        loop = asyncio.get_running_loop()
        tls = None
        if target.scheme == "https":
            if self._tls is None:
                self._tls = tls_context()
            tls = self._tls
        try:
            async with asyncio.timeout(timeout):
                conn = await open_connection(loop, lambda: _Connection(self, target.key),
                                             target, tls)
        except TimeoutError:
            raise ConnectTimeout(timeout) from None
        self._open.add(conn)
        return conn

    def _put_back(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= self.max_idle or self.closed:
            conn.abort()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        self.closed = True
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        for child in self._children.values():
            await child.close()


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout."""
