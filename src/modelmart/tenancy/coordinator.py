"""Shared counters for several workers on one machine, without Redis.

``modelmart serve --workers N`` starts the coordinator in the supervisor process (a daemon
thread running its own event loop) before the server starts the workers; the workers find the
socket through the environment and talk to it with ``CoordinatorCounters``. The coordinator
holds one ``CounterTable``; each request is handled to completion before the next, which is
what makes ``try_add`` atomic across workers.

Protocol, one JSON array per line (orjson) in each direction, over a Unix socket:
request ``[id, op, *args]`` with op ``t`` (try_add), ``a`` (add), ``g`` (get), ``s`` (seed),
``w`` (window_admit), ``v`` (window_lease), ``x`` (window_add); reply ``[id, result]`` or
``[id, null, "error"]``. Ids let a client keep many requests in flight on its one connection.

``window_lease`` leases a worker at most 1/(``LEASE_DIVISOR`` × connected workers) of a
window's room left, counting what it already holds, so the workers' unused leases together
stay a small share of it (see ``leases.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading

import orjson

from modelmart.tenancy.counters import CounterTable, Item, Verdict

log = logging.getLogger(__name__)

SOCKET_ENV = "MODELMART_COORDINATOR_SOCKET"
LEASE_DIVISOR = 16

_OPS = {
    "t": CounterTable.try_add,
    "a": CounterTable.add,
    "g": CounterTable.get,
    "s": CounterTable.seed,
    "w": CounterTable.window_admit,
    "x": CounterTable.window_add,
}


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, table: CounterTable, connections: set) -> None:
        self._table = table
        self._connections = connections
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._connections.add(transport)

    def connection_lost(self, exc) -> None:
        self._connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        # One write for every request that arrived together: pipelined clients get their
        # replies in one segment.
        replies = []
        for line in lines:
            reply = self._reply(line)
            if reply is None:  # a malformed line ends the conversation
                log.warning("coordinator: malformed request %r; closing", line[:200])
                self._transport.write(b"".join(replies))
                self._transport.close()
                return
            replies.append(reply)
        if replies:
            self._transport.write(b"".join(replies))

    def _reply(self, line: bytes) -> bytes | None:
        try:
            request_id, op, *args = orjson.loads(line)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        try:
            if op == "v":
                result = self._table.window_lease(*args,
                                                  LEASE_DIVISOR * max(1, len(self._connections)))
            else:
                result = _OPS[op](self._table, *args)
        except Exception as exc:  # a bad argument must not take the coordinator down
            return orjson.dumps([request_id, None, f"{type(exc).__name__}: {exc}"]) + b"\n"
        return orjson.dumps([request_id, result]) + b"\n"


async def serve(socket_path: str, stop: asyncio.Event, ready: threading.Event | None = None) -> None:
    """Serve one CounterTable on ``socket_path`` until ``stop`` is set."""
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # a stale socket from a killed supervisor
    table = CounterTable()
    connections: set[asyncio.Transport] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: _ServerProtocol(table, connections),
                                           socket_path)
    os.chmod(socket_path, 0o600)  # the counters are this user's business only
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        # Closing the listener leaves accepted connections open; close them so clients
        # fail fast and reconnect instead of waiting on a coordinator that is gone.
        for transport in list(connections):
            transport.close()
        await server.wait_closed()
        if os.path.exists(socket_path):
            os.unlink(socket_path)


class CoordinatorHandle:
    """A coordinator running in a daemon thread of this process."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelmart-coordinator",
                                        daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.socket_path, self._stop, self._ready)

        try:
            try:  # every worker's every request passes here: the faster loop
                import uvloop
            except ImportError:
                asyncio.run(main())
            else:
                uvloop.run(main())
        except BaseException as exc:  # surfaced to start_coordinator's caller
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 10.0) -> "CoordinatorHandle":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("coordinator did not start")
        if self._error is not None:
            raise RuntimeError(f"coordinator failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


def start_coordinator(socket_path: str) -> CoordinatorHandle:
    """Start serving counters on ``socket_path`` in a background thread; ``.stop()`` ends it."""
    return CoordinatorHandle(socket_path).start()


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.pending: dict[int, asyncio.Future] = {}
        self.closed = False
        self._buffer = b""
        self._outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self._timeout = timeout
        self._watched: set[int] = set()
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._watchdog = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _expire(self) -> None:
        # A coordinator that stops answering must fail requests, not hang them. One timer
        # per connection instead of one per request: whatever was already pending at the
        # previous tick has waited at least ``timeout`` and is failed now.
        for request_id in self._watched.intersection(self.pending):
            future = self.pending.pop(request_id)
            if not future.done():
                future.set_exception(TimeoutError("coordinator did not answer in time"))
        self._watched = set(self.pending)
        self._watchdog = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def send(self, message: bytes) -> None:
        # Requests made in the same loop iteration leave in one write (one syscall).
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(message)

    def _flush(self) -> None:
        if not self.closed:
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            request_id, result, *error = orjson.loads(line)
            future = self.pending.pop(request_id, None)
            if future is None or future.done():
                continue  # its caller was cancelled
            if error:
                future.set_exception(RuntimeError(f"coordinator: {error[0]}"))
            else:
                future.set_result(result)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("coordinator connection lost"))
        self.pending.clear()


class CoordinatorCounters:
    """The counters client: one pipelined connection per process (per event loop)."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self._path = socket_path
        self._timeout = timeout  # a request fails after between 1 and 2 times this
        self._ids = itertools.count()
        self._protocol: _ClientProtocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task | None = None

    async def try_add(self, key: str, amount: int, limit: int, ttl: float) -> tuple[bool, int]:
        admitted, value = await self._call("t", key, amount, limit, ttl)
        return admitted, value

    async def window_admit(self, items: list[Item], second: int) -> Verdict:
        return await self._call("w", items, second)

    async def window_lease(self, items: list[tuple[str, int, int, int, int]], second: int
                           ) -> list:
        """``CounterTable.window_lease``: the verdict and what was leased."""
        return await self._call("v", items, second)

    async def window_add(self, name: str, second: int, delta: int) -> None:
        await self._call("x", name, second, delta)

    async def add(self, key: str, amount: int, ttl: float) -> int:
        return await self._call("a", key, amount, ttl)

    async def get(self, key: str) -> int:
        return await self._call("g", key)

    async def seed(self, key: str, value: int, ttl: float) -> None:
        await self._call("s", key, value, ttl)

    async def close(self) -> None:
        if self._protocol is not None and not self._protocol.closed:
            self._protocol.transport.close()
        self._protocol = None

    async def _call(self, op: str, *args):
        protocol = await self._connection()
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        protocol.pending[request_id] = future
        protocol.send(orjson.dumps([request_id, op, *args]) + b"\n")
        return await future

    async def _connection(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol is not None and not protocol.closed and self._loop is loop:
            return protocol
        if self._connecting is None or self._loop is not loop:
            # One connect for all callers; a lost connection is simply made again.
            self._loop = loop
            self._connecting = loop.create_task(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _ClientProtocol:
        try:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_unix_connection(
                lambda: _ClientProtocol(self._timeout), self._path)
            self._protocol = protocol
            return protocol
        finally:
            self._connecting = None


def main(argv: list[str] | None = None) -> int:
    """``python -m modelmart.tenancy.coordinator SOCKET``: run a coordinator in the foreground."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m modelmart.tenancy.coordinator SOCKET", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(serve(argv[0], asyncio.Event()))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
