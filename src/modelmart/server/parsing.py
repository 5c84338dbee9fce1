"""The parsing half of a connection: bytes in, requests out. ``httptools`` (llhttp) calls
back as it parses; each request whose head is complete becomes a ``Cycle`` (its ASGI scope,
and its body as it arrives), handed to ``Connection._dispatch``.

Parsing goes in slices: when reading is held (a request waits for the app, or the body
received is past the mark) what a read brought beyond the slice waits unparsed in
``stash``. Bytes that make no progress — no header end, body byte or message end among
them: a huge header line, a trailer, chunk extensions, which httptools would gather in
memory — are bounded. A chunked body's trailer never becomes request headers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from .cycle import Cycle
from .wire import ASGI_VERSION

if TYPE_CHECKING:
    from .server import Server

SLICE = 4096  # bytes parsed at a time: the most a pause can be late by (~100 pipelined GETs)
DISCONNECT_EXTENSION = "modelmart.disconnect"  # (``Connection.watch``)


class Malformed(Exception):
    """Raised from a parser callback; the connection's ``error`` says what to answer."""


class RequestParser(asyncio.Protocol):
    """What a connection knows of the request being parsed. The connection provides
    ``_dispatch(cycle)``, ``_hold()`` and ``_parse_failed(status, message)``."""

    __slots__ = ("server", "loop", "limits", "parser", "client", "local", "url", "headers",
                 "head_bytes", "expect_continue", "in_body", "stalled", "max_stall", "error",
                 "cycle", "read_paused", "reading", "stash", "head_since", "fresh",
                 "extension", "body_left")

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.loop = server.loop
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.client = self.local = None
        self.url = b""
        self.headers: list | None = None  # the head being parsed; None past it (trailers)
        self.head_bytes = 0
        self.expect_continue = False
        self.in_body = False               # between a head's end and its message's end
        self.stalled = 0                   # bytes parsed since the parser last made progress
        self.max_stall = self.limits.max_head + SLICE
        self.error: tuple[int, bytes] | None = None
        self.cycle: Cycle | None = None    # the last request whose head was parsed
        self.read_paused = False
        self.reading = True                # feed what arrives to the parser
        self.stash = b""                   # received while reading was held, not yet parsed
        self.head_since = server.now       # a head is under way (or due: a new connection)
        self.fresh = True                  # no byte received yet
        self.extension: dict | None = None  # the modelmart.disconnect extension
        self.body_left = 0                 # of a declared content-length, not yet parsed

    def _feed(self, data: bytes) -> None:
        size = len(data)
        if size <= SLICE:
            self._parse(data)
            return
        view = memoryview(data)
        start = 0
        while start < size:
            # Inside a body of declared length, a slice runs to the body's end (or to
            # SLICE past the mark that holds reading): it is all body, so a pause is no
            # later than elsewhere and nothing past the request is parsed ahead. A 200 KB
            # body in 4 KiB slices cost 50 parser calls and 63 µs more CPU a request.
            left = self.body_left
            if left > SLICE and self.in_body:
                room = self.limits.body_high_water - self.cycle.unread
                end = start + min(left, max(SLICE, room))
                if not self._parse(view[start:end], body=True):
                    return
            else:
                end = start + SLICE
                if not self._parse(view[start:end]):
                    return
            if self.read_paused and end < size:
                self.stash = bytes(view[end:])
                return
            start = end

    def _parse(self, chunk, body: bool = False) -> bool:
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade:
            # Served as plain HTTP/1.1 (a server may ignore Upgrade), and the connection
            # closes after it: what follows is in another protocol.
            self.reading = False
            self.stash = b""
            self._hold()
            return False
        except httptools.HttpParserError as exc:
            self._parse_failed(*(self.error or (400, f"Malformed HTTP request: {exc}".encode())))
            return False
        if body:  # every byte of it was body: progress
            return True
        self.stalled += len(chunk)
        if self.stalled > self.max_stall:
            # Bytes with no header, body or end of message among them: a huge header line,
            # a trailer, chunk extensions. httptools would gather them all.
            self._parse_failed(*((400, b"Request trailer or chunk extension too large.")
                                 if self.in_body else (431, b"Request headers are too large.")))
            return False
        return True

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.expect_continue = False
        self.fresh = False
        self.head_since = self.server.now

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_head:
            self.error = (431, b"Request headers are too large.")
            raise Malformed

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > self.limits.max_head:
            self.error = (431, b"Request headers are too large.")
            raise Malformed
        headers = self.headers
        if headers is None:
            return  # a chunked body's trailer: never a request header
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        headers, self.headers = self.headers, None
        self.head_since = 0.0
        self.stalled = 0
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        server = self.server
        version = parser.get_http_version()
        keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():
            keep_alive = False
            if any(n == b"transfer-encoding" or (n == b"content-length" and v.strip() != b"0")
                   for n, v in headers):
                self.error = (400, b"An upgrade request with a body is not supported.")
                raise Malformed
        scope = {
            "type": "http", "asgi": ASGI_VERSION, "http_version": version,
            "server": self.local, "client": self.client, "scheme": "http",
            "method": parser.get_method().decode("ascii"), "root_path": server.root_path,
            "path": path, "raw_path": raw_path, "query_string": parsed.query or b"",
            "headers": headers, "extensions": {DISCONNECT_EXTENSION: self.extension},
        }
        self.body_left = 0
        if not any(n == b"transfer-encoding" for n, _ in headers):
            for n, v in headers:
                if n == b"content-length":
                    try:
                        self.body_left = int(v)  # llhttp has checked it
                    except ValueError:
                        pass
                    break
        cycle = Cycle(self, scope, keep_alive, version == "1.0", self.expect_continue)
        if server.extras:
            self._extras(scope, cycle)
        self.cycle = cycle
        self.in_body = True
        self._dispatch(cycle)

    def _extras(self, scope: dict, cycle: Cycle) -> None:
        """What only some servers ask for: a root path, the lifespan's state, an access log."""
        server = self.server
        if server.root_path:
            scope["path"] = server.root_path + scope["path"]
            scope["raw_path"] = server.root_path.encode() + scope["raw_path"]
        if server.state:
            scope["state"] = server.state.copy()
        if server.access_log:
            cycle.t0 = self.loop.time()
            cycle.target = self.url

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        cycle.body.append(body)
        cycle.unread += len(body)
        self.body_left -= len(body)
        self.stalled = 0
        if cycle.unread > self.limits.body_high_water:
            self._hold()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        self.body_left = 0
        cycle.body_done = True
        self.in_body = False
        self.stalled = 0
        cycle.wake()
