"""One request and its response, as the ASGI app sees them: ``receive()`` hands over the
body as it arrives (and ``http.disconnect`` when the client goes away or the response is
complete), ``send()`` frames the response.

Framing: the server writes ``content-length``, ``transfer-encoding`` and ``connection``
itself, from what the app asked for. A body sent in one message leaves with its head in
one write and a ``content-length``; a streamed one is chunked (close-delimited for HTTP/1.0
clients, which never get chunked); an app's own ``content-length`` is held to (a longer
body is an app error, a shorter one ends the connection). HEAD gets the framing headers GET
would get, with no body. Header names must be HTTP tokens and values free of CR, LF and
NUL: anything else is an app error (a 500 if nothing was sent), never written."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable

from .wire import (CONTENT_LENGTH, CONTINUE, STATUS_LINES, TRANSFER_ENCODING, InvalidResponse,
                   content_length, header_kind, status_line)

if TYPE_CHECKING:
    from .connection import Connection

DISCONNECT = {"type": "http.disconnect"}
# How the response body is delimited.
_UNDECIDED, _LENGTH, _CHUNKED, _CLOSE, _NONE = range(5)
_NO_BODY_STATUSES = (204, 304)


class Cycle:
    __slots__ = ("conn", "scope", "body", "body_done", "unread", "waiter", "body_since",
                 "started", "finished", "disconnected", "keep_alive", "http10", "head_only",
                 "expect_continue", "head", "status", "mode", "declared", "sent_bytes",
                 "unsent", "flush_due", "on_disconnect", "t0", "target")

    def __init__(self, conn: "Connection", scope: dict, keep_alive: bool, http10: bool,
                 expect_continue: bool) -> None:
        self.conn, self.scope, self.keep_alive, self.http10 = conn, scope, keep_alive, http10
        self.expect_continue = expect_continue
        self.body: list[bytes] | None = []  # None: all of it was handed over
        self.body_done = False
        self.unread = 0                       # bytes received, not yet handed over
        self.waiter: asyncio.Future | None = None
        self.body_since = 0.0                 # when receive() began waiting for body bytes
        self.started = self.finished = self.disconnected = False
        self.head_only = scope["method"] == "HEAD"
        self.head = b""                       # the response head, until the first body message
        self.status = 0
        self.mode = _UNDECIDED
        self.declared: int | None = None      # the response's content-length
        self.sent_bytes = 0
        self.unsent: list[bytes] | None = None  # streamed bytes held to the end of the iteration
        self.flush_due = False
        self.on_disconnect: Callable[[], None] | None = None
        self.t0 = 0.0
        self.target = b""

    # ---- the client going away ----------------------------------------------------------
    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback()`` once when the client goes away (the ``modelmart.disconnect``
        extension, through ``Connection.watch``); returns the function that stops watching."""
        if self.disconnected:
            self.conn.loop.call_soon(callback)
        else:
            self.on_disconnect = callback
        return self._unwatch

    def _unwatch(self) -> None:
        self.on_disconnect = None

    def gone(self) -> None:
        """The client went away (or its request can't go on): the app sees http.disconnect."""
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

    # ---- receive -------------------------------------------------------------------------
    async def receive(self) -> dict:
        if self.expect_continue:
            self._continue()
        if self.body is None or self.finished:
            # All of the body was handed over (or the response is complete): what comes
            # next is the client going away.
            while not self.disconnected and not self.finished:
                await self._wait()
            return DISCONNECT
        if not self.body and not self.body_done and not self.disconnected:
            self.body_since = self.conn.server.now  # the body timeout runs from here
            try:
                while not self.body and not self.body_done and not self.disconnected:
                    await self._wait()
            finally:
                self.body_since = 0.0
        if self.disconnected:
            return DISCONNECT
        chunks = self.body
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.body_done:
            self.body = None
            return {"type": "http.request", "body": data, "more_body": False}
        self.body = []
        self.unread = 0
        self.conn.body_taken()
        return {"type": "http.request", "body": data, "more_body": True}

    def _continue(self) -> None:
        """``Expect: 100-continue``: the app asks for the body, so the client may send it.
        Only now (an app that answers from the headers alone never invites the body), and
        only before any of the final response was written."""
        self.expect_continue = False
        if (not self.started or self.head) and not self.http10 and self.conn._writable():
            self.conn.transport.write(CONTINUE)

    # ---- send ------------------------------------------------------------------------------
    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self._write(message.get("body", b""), message.get("more_body", False)):
                await self.conn.drain()
        elif kind == "http.response.start":
            self._start(message)
        else:
            raise InvalidResponse(f"unexpected ASGI message {kind!r}")

    def _start(self, message: dict) -> None:
        if self.started:
            raise InvalidResponse("http.response.start sent twice")
        status = message["status"]
        if type(status) is not int or not 200 <= status <= 999:
            raise InvalidResponse(f"invalid response status {status!r}")
        lines = [STATUS_LINES.get(status) or status_line(status)]
        append = lines.append
        known = self.conn.header_kinds
        declared = None
        chunked = False
        count = 1
        for name, value in message.get("headers", ()):
            kind = known.get(name)
            if kind is None:
                kind = header_kind(name, known)
            if kind:  # framing: the server writes its own
                if kind == CONTENT_LENGTH:
                    declared = content_length(value, declared)
                elif kind == TRANSFER_ENCODING:
                    if value.lower() != b"chunked":
                        raise InvalidResponse(f"unsupported transfer-encoding {value!r}")
                    chunked = True
                elif b"close" in value.lower():
                    self.keep_alive = False
                continue
            append(name)
            append(b": ")
            append(value)
            append(b"\r\n")
            count += 1
        head = b"".join(lines)
        # One pass over the joined head (cheaper than a test of every value): no CR, LF or
        # NUL but the line ends.
        if len(head.translate(None, b"\r\n\0")) != len(head) - 2 * count:
            raise InvalidResponse("a response header value holds CR, LF or NUL")
        self.started = True
        self.status = status
        self.head = head
        if status in _NO_BODY_STATUSES:
            self.mode = _NONE
        elif chunked:  # it wins over a content-length, as in RFC 9112 6.3
            self.mode = _CHUNKED
        elif declared is not None:
            self.mode, self.declared = _LENGTH, declared

    def _framing(self, body: bytes, more: bool) -> bytes:
        """The head's last lines, now that the first body message says how the body goes."""
        mode = self.mode
        if mode == _UNDECIDED:
            if not more:  # the whole body in one message: give its length
                mode, self.declared = _LENGTH, len(body)
            else:
                mode = _CHUNKED
        if mode == _CHUNKED and self.http10:
            mode = _CLOSE
        self.mode = mode
        head, self.head = self.head, b""
        if not self.body_done:
            self.keep_alive = False  # a reply before the request's end: what follows can't be trusted
        if mode == _LENGTH:
            head += b"content-length: %d\r\n" % self.declared
        elif mode == _CHUNKED:
            head += b"transfer-encoding: chunked\r\n"
        elif mode == _CLOSE:
            self.keep_alive = False
        if not self.keep_alive:
            return head + b"connection: close\r\n\r\n"
        if self.http10:
            return head + b"connection: keep-alive\r\n\r\n"
        return head + b"\r\n"

    def _write(self, body: bytes, more: bool) -> bool:
        """Write a body message (or hold it to the end of the loop iteration); True when
        the sender must wait for the client to take what was written."""
        if not self.started:
            raise InvalidResponse("http.response.body before http.response.start")
        conn = self.conn
        if self.finished:
            if self.disconnected:
                return False
            raise InvalidResponse("http.response.body after the response was complete")
        if self.disconnected or conn.transport is None:
            if not more:
                self.finished = True
            return False
        out = self._framing(body, more) if self.head else b""
        size = len(body)
        if size and not self.head_only and self.mode != _NONE:
            mode = self.mode
            self.sent_bytes += size
            if mode == _CHUNKED:
                out += b"%x\r\n%s\r\n" % (size, body)
            else:
                if mode == _LENGTH and self.sent_bytes > self.declared:
                    raise InvalidResponse("the response body is longer than its content-length")
                out = out + body if out else body
        if more:
            # Held to the end of this loop iteration: what else the app sends meanwhile (the
            # next events of one upstream read, the stream's end) leaves in the same write.
            if out:
                if self.unsent is None:
                    self.unsent = []
                self.unsent.append(out)
                if not self.flush_due:
                    self.flush_due = True
                    conn.loop.call_soon(self.flush)
            if conn.write_paused:
                self.flush()
                return True
            return False
        self.finished = True
        if not self.head_only:
            if self.mode == _CHUNKED:
                out += b"0\r\n\r\n"
            elif self.mode == _LENGTH and self.sent_bytes < self.declared:
                self.keep_alive = False  # shorter than it said: the client can't tell the end
        if self.unsent:
            self.unsent.append(out)
            out = b"".join(self.unsent)
            self.unsent.clear()
        if out:
            conn.transport.write(out)
        if self.waiter is not None:
            self.wake()  # a task waiting in receive() gets http.disconnect
        return False

    def flush(self) -> None:
        self.flush_due = False
        if self.unsent:
            data = b"".join(self.unsent)
            self.unsent.clear()
            if self.conn._writable():
                self.conn.transport.write(data)
