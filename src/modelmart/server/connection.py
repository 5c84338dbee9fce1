"""One HTTP/1.1 connection: an asyncio protocol that hands each request parsed
(``parsing.py``) to the ASGI app as a ``Cycle`` (``cycle.py``) and answers them in order.

The app is called as soon as a request's headers are complete, before any of its body is
read. That is the seam that lets an app authenticate from the headers and answer 401 (or
413 from a declared length) without reading a byte of the body: the body is read from the
socket only as the app asks for it (``receive()``), ``Expect: 100-continue`` is answered
only then, and after a reply sent before the body was read the connection is closed
(what follows on it can't be trusted as the next request), after a short linger so the
client reads the reply rather than a reset.

Bounds (``limits.py``): one request at a time — while one is answered, a pipelined next
one is parsed but nothing more is read, and between pipelined requests other connections
get their turn; the body received and not yet taken by the app is held under a high-water
mark; a malformed request is answered only after those before it. Timeouts are enforced by
the server's sweep from timestamps (``check``), not by a timer per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from .cycle import Cycle
from .parsing import SLICE, RequestParser
from .wire import PLAIN_500, plain, printable

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("modelmart.server")
access = logging.getLogger("modelmart.access")


def _no_op() -> None:
    pass


class Connection(RequestParser):
    __slots__ = ("peer", "header_kinds", "transport", "current", "pipeline", "task",
                 "idle_waiter", "write_paused", "drain_waiter", "idle_since", "rejection",
                 "closed", "linger_until", "drain_since", "serial")

    def __init__(self, server: "Server", peer: str | None = None) -> None:
        super().__init__(server)
        self.peer = peer
        self.header_kinds = server.header_kinds
        self.transport: asyncio.Transport | None = None
        self.current: Cycle | None = None     # the one the app is (about to be) answering
        self.pipeline: deque[Cycle] = deque()  # parsed, waiting for the app
        self.task: asyncio.Task | None = None   # the app, running one cycle after another
        self.idle_waiter: asyncio.Future | None = None  # the task, idle, waits on it
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.idle_since = server.now
        self.rejection: bytes | None = None  # the reply to a bad request, once those before it are answered
        self.closed = False
        self.linger_until = 0.0
        self.drain_since = 0.0
        self.serial = 0  # the order connections were opened in (capacity.Connections)
        # The modelmart.disconnect extension, one per connection: a request's own (holding
        # its cycle) would make every request a reference cycle, left to the garbage
        # collector, whose full passes then stalled the loop for tens of milliseconds.
        self.extension = {"watch": self.watch, "task": None}

    # ---- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        client = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = client[:2] if isinstance(client, tuple) else client
        self.local = local[:2] if isinstance(local, tuple) else local
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.reading:
            if self.stash:  # a read after a pause was asked for: keep the order
                self.stash += data
            elif len(data) <= SLICE:
                self._parse(data)
            else:
                self._feed(data)
        elif self.linger_until:
            self.stalled += len(data)  # dropped; past the budget, left unread till the end
            if self.stalled > self.limits.body_high_water:
                self._hold()

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.reading = False
        self.extension = self.parser = None  # they refer to the connection: no cycle left
        self._forget()
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

    def _dispatch(self, cycle: Cycle) -> None:
        """A request's head is complete: to the app now, or queued behind the one it answers."""
        if self.idle_waiter is not None and not self.idle_waiter.done():
            self.current = cycle
            self.idle_waiter.set_result(cycle)  # the connection's task waits for it
        elif self.task is None:
            self.current = cycle
            self.task = self.extension["task"] = self.loop.create_task(self._run(cycle))
        else:
            self.pipeline.append(cycle)
            # One request at a time: read no further until the app is done with this one.
            self._hold()

    def _parse_failed(self, status: int, message: bytes) -> None:
        """A malformed request: answered once the requests before it are, then the end."""
        self.reading = False
        self.stash = b""
        self._hold()
        cycle = self.cycle
        if self.in_body and cycle is not None and not cycle.body_done:
            # Its head was handed over, its body is broken (not so a request refused at its
            # head's end, like an upgrade with a body: the last cycle is an earlier one).
            if self.pipeline and self.pipeline[-1] is cycle:
                self.pipeline.pop()
            else:
                cycle.gone()
        self.rejection = plain(status, message)
        if self.current is None and not self.pipeline:
            self._reject()

    # ---- the app -----------------------------------------------------------------------
    async def _run(self, cycle: Cycle) -> None:
        app = self.server.app
        while True:
            self.current = cycle
            try:
                result = await app(cycle.scope, cycle.receive, cycle.send)
            except BaseException as exc:
                self._app_failed(cycle, exc)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
            else:
                if result is not None:
                    log.error("the app returned %r for %s %s (an ASGI app returns None)",
                              result, cycle.scope["method"], cycle.scope["path"])
                    cycle.keep_alive = False
                if not cycle.started and not cycle.disconnected and self.rejection is None:
                    log.error("the app returned without a response: %s %s",
                              cycle.scope["method"], cycle.scope["path"])
            if self.server.access_log:
                self._log(cycle)
            if not cycle.finished or not cycle.keep_alive or self.transport is None:
                self._end(cycle)
                break
            if self.write_paused:
                await self.drain()  # a pipelining client that doesn't read gets no more
            if self.pipeline:
                cycle = self.pipeline.popleft()
                await asyncio.sleep(0)  # other connections' turn between pipelined requests
                if self.transport is None:
                    break
                self._release()  # the last one queued: its body, and what follows, to read
                continue
            self.current = None
            self.idle_since = self.server.now
            if self.rejection is not None:
                self._reject()
                break
            if self.read_paused:
                self._release()  # what arrived meanwhile: may queue the next request
            if self.pipeline:
                cycle = self.pipeline.popleft()
                continue
            if self.transport is None or self.closed:
                break
            # Keep-alive: this task waits for the connection's next request rather than
            # ending and a new one starting for it (a task costs more than a future).
            self.idle_waiter = self.loop.create_future()
            try:
                cycle = await self.idle_waiter
            except asyncio.CancelledError:
                break  # the connection closed while idle, or the server is stopping
            finally:
                self.idle_waiter = None
        self.current = None
        self.task = None

    def _app_failed(self, cycle: Cycle, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) and (cycle.disconnected or self.server.stopping):
            return
        log.error("the app failed on %s %s", cycle.scope["method"], cycle.scope["path"],
                  exc_info=exc)
        cycle.keep_alive = False

    def _end(self, cycle: Cycle) -> None:
        """The connection's last request is over: if nothing of a reply was written, say
        why (the bad request's rejection, or a 500 for an app that failed or gave none);
        then close."""
        if not cycle.started and self._writable():
            if self.rejection is not None:
                self._reject()
                return
            if not cycle.disconnected:
                self.transport.write(PLAIN_500)
        if cycle.finished and not cycle.body_done and self._writable():
            self._linger()
        else:
            self._close()

    def watch(self, callback):
        """The ``modelmart.disconnect`` extension: ``callback()`` once if the client of the
        request being answered goes away; returns the function that stops watching."""
        cycle = self.current
        if cycle is None:  # nothing being answered: as good as gone
            self.loop.call_soon(callback)
            return _no_op
        return cycle.watch(callback)

    def idle(self) -> bool:
        """No request being answered or handed over to the connection's task."""
        return self.current is None and not self.pipeline

    def _log(self, cycle: Cycle) -> None:
        s = cycle.scope
        access.info('%s - "%s %s HTTP/%s" %d %d %.1fms', (self.client or ("-",))[0], s["method"],
                    printable(cycle.target), s["http_version"], cycle.status, cycle.sent_bytes,
                    (self.loop.time() - cycle.t0) * 1000)

    async def drain(self) -> None:
        if self.write_paused and self.transport is not None:
            self.drain_since = self.server.now
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None

    def body_taken(self) -> None:
        """The app took the body received so far: read on, unless a request waits."""
        if self.read_paused:
            self._release()

    # ---- the server's sweep --------------------------------------------------------------
    def check(self, now: float) -> None:
        """Enforce the timeouts, from timestamps (the server calls this about once a second)."""
        limits = self.limits
        if self.drain_waiter is not None and now - self.drain_since > limits.send_timeout:
            self._abort()  # the client reads nothing of what it is sent
            return
        cycle = self.current
        if cycle is not None:
            if cycle.body_since and now - cycle.body_since > limits.body_timeout:
                self._body_timed_out(cycle)
            return
        if self.closed or self.pipeline:
            return
        if self.linger_until:
            if now > self.linger_until:
                self._close()
        elif self.head_since:
            if now - max(self.head_since, self.idle_since) > limits.header_timeout:
                if self.fresh:
                    self._close()  # never said a word: nothing to answer
                else:
                    self.rejection = plain(408, b"The request headers did not arrive in time.")
                    self._reject()
        elif now - self.idle_since > limits.keepalive and self.idle():
            self._close()

    def _body_timed_out(self, cycle: Cycle) -> None:
        self.reading = False
        self.stash = b""
        self._hold()
        self.rejection = plain(408, b"The request body did not arrive in time.")
        cycle.gone()  # the app, waiting for the body, gets http.disconnect; _end answers

    def evictable(self) -> bool:
        """Not answering a request: idle, new, lingering, or still sending a head."""
        return self.current is None and not self.pipeline and not self.closed

    def evict(self) -> None:
        self._close()

    # ---- helpers -----------------------------------------------------------------------
    def _hold(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def _release(self) -> None:
        """Read again — first what arrived while reading was held, then the socket —
        unless a parsed request waits for the app or the body received is past the mark."""
        if not self.read_paused or not self.reading or self.pipeline:
            return
        cycle = self.cycle
        if cycle is not None and cycle.unread > self.limits.body_high_water:
            return
        self.read_paused = False
        if self.stash:
            data, self.stash = self.stash, b""
            self._feed(data)
            if self.read_paused or not self.reading:
                return
        if self.transport is not None:
            self.transport.resume_reading()

    def _writable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def _reject(self) -> None:
        if self._writable() and self.rejection is not None:
            self.transport.write(self.rejection)
            self._linger()  # the client may still be sending
        else:
            self._close()

    def _linger(self) -> None:
        """Half-close after a reply the client may not be waiting for yet (sent before the
        request body was read, or to a bad or slow request), and drop what it still sends
        for a while: closing with unread bytes would send a reset, which can reach the
        client before the reply does."""
        transport = self.transport
        if not transport.can_write_eof():
            self._close()
            return
        self.reading = False
        self.stash = b""
        self.stalled = 0
        self.linger_until = self.server.now + self.limits.linger
        transport.write_eof()
        self.read_paused = False
        transport.resume_reading()

    def _close(self) -> None:
        if self._writable():
            if self.current is not None:
                self.current.flush()  # a stream's last events, before an error ended it
            self.transport.close()
        self._forget()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._forget()

    def _forget(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.connections.forget(self)
