"""The ledger writer: one process that inserts the usage records of every worker on this
machine into an SQLite database.

``modelmart serve`` starts it beside the workers when the database is SQLite. A worker's
recorder still journals each record before the response is sent and keeps it queued until
it is in the database; it only hands its batches to this process instead of inserting them
itself. So an API worker spends no CPU and no GIL time on SQLite (each row costs ~5 µs of
B-tree and index work there, and the thread doing it competed with the event loop for the
GIL), and one process writes the file instead of N contending for its lock.

Wire format on a Unix socket: a request is a 4-byte big-endian length and that many bytes of
journal lines (``journal.encode``, newline-terminated); the reply is a 4-byte length and
``ok <rows added>`` or ``error <message>``. Inserts are idempotent by request id, so a batch
sent twice (a reply lost, a retry) is harmless.

    python -c "from modelmart.metering.writer import main; main()" --socket PATH [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from . import journal

log = logging.getLogger("modelmart.ledger")

_LENGTH = struct.Struct("!I")
MAX_FRAME = 256 << 20


class WriterError(Exception):
    """The writer answered, but could not insert the batch (the database refused it)."""


async def _handle(store, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            (size,) = _LENGTH.unpack(await reader.readexactly(4))
            if size > MAX_FRAME:
                return
            payload = await reader.readexactly(size)
            try:
                rows = [journal.row(line) for line in payload.split(b"\n") if line]
                reply = b"ok %d" % await store.insert_usage_rows(rows)
            except Exception as exc:  # the worker keeps the batch and retries
                log.warning("ledger insert of a batch failed: %s", exc)
                reply = b"error " + str(exc).encode("utf-8", "replace")[:2000]
            writer.write(_LENGTH.pack(len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    except asyncio.CancelledError:  # the writer is stopping; this task is done
        pass
    finally:
        writer.close()


async def serve(socket_path: str, database_url: str | None) -> None:
    """Serve until SIGTERM, or until the process that started this one is gone."""
    from modelmart.store.base import open_store

    store = await open_store(database_url)
    parent = os.getppid()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGTERM from ``serve`` once its workers are done. Ctrl-C reaches the whole process
    # group: the workers stop and flush their last records through here first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_unix_server(lambda r, w: _handle(store, r, w), socket_path)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if os.getppid() != parent:  # orphaned: the server was killed
                break
    finally:
        server.close()
        await server.wait_closed()
        await store.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


class WriterClient:
    """A worker's connection to the ledger writer; one batch at a time."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def insert_lines(self, lines: list[bytes]) -> int:
        """Insert journal lines; returns rows added. Raises ``OSError``/``TimeoutError``
        when the writer can't be reached or doesn't answer, ``WriterError`` when it answered
        that the database refused the batch."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._writer is None:
                        self._reader, self._writer = await asyncio.open_unix_connection(
                            self.socket_path)
                    payload = b"".join(lines)
                    self._writer.write(_LENGTH.pack(len(payload)) + payload)
                    (size,) = _LENGTH.unpack(await self._reader.readexactly(4))
                    reply = await self._reader.readexactly(size)
            except BaseException:
                self._drop()
                raise
        if reply.startswith(b"ok "):
            return int(reply[3:])
        raise WriterError(reply.removeprefix(b"error ").decode("utf-8", "replace"))

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def close(self) -> None:
        async with self._lock:
            self._drop()


class WriterProcess:
    """The writer as a child process of ``modelmart serve``; one that dies is started again
    (meanwhile the workers insert for themselves)."""

    RESTART_DELAY = 1.0

    def __init__(self, database_url: str | None) -> None:
        self.folder = tempfile.mkdtemp(prefix="modelmart-ledger-")
        self.socket_path = os.path.join(self.folder, "ledger.sock")
        # -c rather than -m: the package imports this module (a runpy warning otherwise).
        self._argv = [sys.executable, "-c", "from modelmart.metering.writer import main; main()",
                      "--socket", self.socket_path]
        if database_url:
            self._argv += ["--database", database_url]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.proc = subprocess.Popen(self._argv)
        self._watcher = threading.Thread(target=self._keep_alive, name="ledger-writer-watch",
                                         daemon=True)
        self._watcher.start()

    def _keep_alive(self) -> None:
        while True:
            code = self.proc.wait()
            if self._stopping.wait(self.RESTART_DELAY):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                log.error("ledger writer exited (code %s): starting another", code)
                self.proc = subprocess.Popen(self._argv)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.socket_path):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """After the workers: it finishes the batch in hand, then exits."""
        with self._lock:
            self._stopping.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._watcher.join(timeout)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_writer(database_url: str | None) -> WriterProcess | None:
    """Start the writer for an SQLite database (None for PostgreSQL, whose server already
    does the inserting work outside the workers, or when it does not come up: the workers
    then insert themselves)."""
    from modelmart.store.base import DEFAULT_URL, URL_ENV

    url = database_url or os.environ.get(URL_ENV) or DEFAULT_URL
    if url.startswith(("postgresql://", "postgres://")):
        return None
    writer = WriterProcess(url)
    if writer.wait_ready():
        return writer
    log.warning("the ledger writer did not start; workers insert usage themselves")
    writer.stop()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="modelmart's ledger writer")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--database", default=None)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    asyncio.run(serve(args.socket, args.database))


if __name__ == "__main__":
    main()
