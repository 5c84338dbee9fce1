"""The durable, batched ledger writer.

``record()`` is synchronous and cheap: one ``os.write`` to this process's journal segment,
then the record waits in memory for the batch writer. The API calls it before sending the
response, so a client that got its answer has its record on disk. The writer inserts
batches with ``store.insert_usage`` (idempotent by request_id), or hands them to the ledger
writer process (``writer.py``) when one is given, and retries with backoff while the
database is down; the journal keeps the records meanwhile. Segments of dead processes are
replayed at ``start()`` and swept periodically after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter, deque
from typing import Any

from modelmart.store.records import UsageRecord

from . import journal
from .journal import Journal, Segment
from .writer import WriterClient, WriterError

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, store: Any, journal_dir: str, batch_size: int = 500,
                 flush_interval: float = 0.25, *, max_segment_bytes: int = 8 << 20,
                 orphan_sweep_interval: float = 30.0, max_backoff: float = 5.0,
                 writer: WriterClient | None = None) -> None:
        self.store = store
        self.writer = writer
        self.journal_dir = journal_dir
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.orphan_sweep_interval = orphan_sweep_interval
        self.max_backoff = max_backoff
        self._journal = Journal(journal_dir, max_segment_bytes)
        # Records in order, each with its segment (None if the journal write failed) and
        # its journal line (what the ledger writer is sent).
        self._queue: deque[tuple[Segment | None, UsageRecord, bytes]] = deque()
        self._writer_down = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def record(self, rec: UsageRecord) -> None:
        """Journal ``rec`` and queue it. Call from the event loop's thread.

        After ``close()`` a record is still journaled (in a new segment, replayed by the
        next start), so a request finishing during shutdown is not lost."""
        seg = None
        line = journal.encode(rec)
        try:
            seg = self._journal.append(line)
        except OSError:
            # Still billed from memory; only its crash safety is lost, so shout, don't fail
            # a request whose upstream work is already done and paid for.
            log.exception("usage journal write failed; request %s is not crash-safe",
                          rec.request_id)
        self._queue.append((seg, rec, line))
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def pending(self) -> int:
        """Records recorded but not yet known to be in the database."""
        return len(self._queue)

    async def start(self) -> int:
        """Replays orphaned segments (returns rows new to the database), starts the writer."""
        added = await self.replay_orphans()
        self._task = asyncio.create_task(self._run(), name="usage-recorder")
        return added

    async def replay_orphans(self) -> int:
        added = 0
        for path, fd in journal.orphans(self.journal_dir):
            try:
                records = journal.read_segment(fd, path)
                for i in range(0, len(records), self.batch_size):
                    added += await self.store.insert_usage(records[i:i + self.batch_size])
            except BaseException:
                os.close(fd)  # unlocked: left for the next replay
                raise
            journal.discard(path, fd)
            log.info("replayed usage journal %s: %d records", path, len(records))
        return added

    async def close(self, timeout: float = 10.0) -> None:
        """Flushes everything (waiting up to ``timeout`` for the database), then removes
        committed segments. Whatever could not be flushed stays in the journal."""
        self._closing = True
        self._wake.set()
        if self._task is None and self._queue:
            self._task = asyncio.create_task(self._run())
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                log.warning("usage recorder closed with %d records unflushed; they stay in "
                            "the journal for the next start", self.pending())
            finally:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._journal.close()
        if self.writer is not None:
            await self.writer.close()

    # -- the writer --------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.flush_interval
        next_sweep = loop.time() + self.orphan_sweep_interval
        while self._queue or not self._closing:
            if not self._closing and len(self._queue) < self.batch_size:
                await self._sleep(self.flush_interval)
            if self._queue and not await self._flush_batch():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.flush_interval
            if loop.time() >= next_sweep and not self._closing:
                next_sweep = loop.time() + self.orphan_sweep_interval
                await self._sweep()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _flush_batch(self) -> bool:
        # Peek, insert, then pop: a failed insert leaves the batch first in line.
        batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
        try:
            if not await self._to_writer(batch):
                await self.store.insert_usage([rec for _, rec, _ in batch])
        except Exception:
            log.warning("usage insert of %d records failed; retrying", len(batch),
                        exc_info=True)
            return False
        for _ in batch:
            self._queue.popleft()
        for seg, count in Counter(seg for seg, _, _ in batch if seg is not None).items():
            self._journal.committed(seg, count)
        return True

    async def _to_writer(self, batch: list) -> bool:
        """Hand ``batch`` to the ledger writer; False when there is none or it can't be
        reached (then this process inserts it: a writer that died costs speed, not rows)."""
        if self.writer is None:
            return False
        try:
            await self.writer.insert_lines([line for _, _, line in batch])
        except (OSError, TimeoutError, EOFError, asyncio.IncompleteReadError) as exc:
            if not self._writer_down:
                log.warning("ledger writer unreachable (%s); inserting usage in this process",
                            exc or type(exc).__name__)
            self._writer_down = True
            return False
        except WriterError:
            raise  # the database refused it: retried like a failed insert
        if self._writer_down:
            log.info("ledger writer reachable again")
            self._writer_down = False
        return True

    async def _sweep(self) -> None:
        """Picks up segments of workers that died since we started."""
        try:
            await self.replay_orphans()
        except Exception:
            log.warning("usage journal sweep failed; will retry", exc_info=True)
