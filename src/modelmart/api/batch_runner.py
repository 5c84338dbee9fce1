"""Runs batches: each request through the gateway's own request path, in process, at a
bounded concurrency, resuming where a stopped or killed process left off.

Which process runs a batch: the one holding its lease (``batches.runner``, renewed every
few seconds). Every worker and replica polls for batches whose lease is free or expired,
or whose holder was a process of this host that no longer exists (so a server killed with
``kill -9`` and started again resumes at once instead of waiting out the lease).

Exactly once: a request's row is marked ``running`` under a fresh ledger request id before
its call, and ``done`` with the answer after. The call is an ordinary request (the
surface's decode, ``admission.call``, routing, settlement, encode) whose scope carries a
``BatchRequest``: the batch's key, that request id, and the batch id, which prices it at
the batch rate and marks its ledger row. A row found ``running`` by a new holder was cut
off: it runs again under the same request id when its ledger row is missing (never
settled) or billed (settled, but the answer was lost before it was stored; the ledger keeps
the first row, request ids being unique), and under a new id when the ledger shows it
refused or cancelled (nothing billed). So no request is billed twice and every request is
answered once; only a request whose upstream call was under way when the process died is
sent upstream again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

import orjson

from modelmart.core.errors import AuthenticationFailed, GatewayError
from modelmart.core.ids import new_id
from modelmart.core.money import usd_to_pico
from modelmart.dialects import anthropic_messages, openai_chat
from modelmart.store.batches import (
    ACTIVE, CANCELED, ERRORED, EXPIRED, SUCCEEDED, BatchRecord, BatchTables, RequestRow,
)

from . import batch_views
from .admission import BATCH_SCOPE, BatchRequest

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.batches")

# Answers worth waiting for and trying again (a rate limit, no capacity now), until the
# batch's window ends; anything else is the request's answer.
RETRY_STATUSES = frozenset({429, 503, 529})
MAX_RETRY_WAIT = 60.0
STALE_VALIDATING = 600.0  # seconds: a batch still being stored after this was cut off
STALE_CHECK_EVERY = 60.0  # seconds: how often to look for such batches (a write)


class BatchRunner:
    def __init__(self, app: "App", *, concurrency: int = 8, parallel: int = 2,
                 poll_interval: float = 1.0, lease_seconds: float = 30.0,
                 retention_days: float = 30.0) -> None:
        self.app = app
        self.retention = retention_days * 86400
        self.concurrency = max(1, concurrency)
        self.parallel = max(1, parallel)
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.host = socket.gethostname()
        self.runner_id = f"{self.host}/{os.getpid()}/{secrets.token_hex(4)}"
        self.tables: BatchTables | None = None
        self.runs: dict[str, "_BatchRun"] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.tables = BatchTables(self.app.store)
        self._task = asyncio.ensure_future(self._poll())

    def wake(self, cancelled: str | None = None) -> None:
        """A batch was made or cancelled: look now rather than at the next poll (a run of
        this process stops at once; one elsewhere at its next heartbeat)."""
        run = self.runs.get(cancelled) if cancelled else None
        if run is not None and run.stop is None:
            run.stop = "cancel"
        self._wake.set()

    async def close(self) -> None:
        """Stops every run; requests cut off now resume in the next process to hold them."""
        if self._task is not None:
            self._task.cancel()
        runs = list(self.runs.values())
        for run in runs:
            run.task.cancel()
        for run in runs:
            try:
                await run.task
            except BaseException:  # cancelled, or failed: logged by the run
                pass
            try:
                await self.tables.release(run.batch.id, self.runner_id)
            except Exception:
                log.warning("releasing the lease of %s failed", run.batch.id, exc_info=True)

    async def _poll(self) -> None:
        # Polling only reads while no batch is there to run: an idle server never takes
        # SQLite's write lock, which other processes (the ledger writer) need.
        stale_check = 0.0
        while True:
            try:
                if time.monotonic() >= stale_check:
                    stale_check = time.monotonic() + STALE_CHECK_EVERY
                    if await self.tables.stale_validating(time.time() - STALE_VALIDATING):
                        await self.tables.fail_stale(time.time() - STALE_VALIDATING)
                    await self._purge()
                await self._claim_some()
            except Exception:
                log.exception("looking for batches to run failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _purge(self) -> None:
        """Batches ended, and files uploaded, more than the retention ago: prompts and
        answers are not kept longer than that."""
        if self.retention <= 0:
            return
        batches, files = await self.tables.expired(time.time() - self.retention)
        for batch_id in batches:
            await self.tables.delete_batch(batch_id)
        for file_id in files:
            await self.tables.delete_file(file_id)
        if batches or files:
            log.info("retention: removed %d batches and %d files", len(batches), len(files))

    async def _claim_some(self) -> None:
        if len(self.runs) >= self.parallel:
            return
        now = time.time()
        for batch in await self.tables.active():
            if batch.id in self.runs or not self._free(batch, now):
                continue
            if await self.tables.claim(batch.id, batch.runner, self.runner_id,
                                       now + self.lease_seconds):
                batch.runner = self.runner_id
                run = _BatchRun(self, batch)
                self.runs[batch.id] = run
                run.task = asyncio.ensure_future(run.run())
                run.task.add_done_callback(lambda _, i=batch.id: self.runs.pop(i, None))
                if len(self.runs) >= self.parallel:
                    return

    def _free(self, batch: BatchRecord, now: float) -> bool:
        if not batch.runner or (batch.lease_until or 0) < now:
            return True
        host, _, rest = batch.runner.partition("/")
        pid = rest.partition("/")[0]
        if host != self.host or not pid.isdigit() or batch.runner == self.runner_id:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # its holder is dead: no need to wait out the lease
        except OSError:
            pass  # alive, another user's
        return int(pid) == os.getpid()  # this process, started again under the same pid


class _BatchRun:
    """One batch being run by this process."""

    def __init__(self, runner: BatchRunner, batch: BatchRecord) -> None:
        self.runner = runner
        self.app = runner.app
        self.tables = runner.tables
        self.batch = batch
        self.task: asyncio.Task | None = None
        # Why it stops early: "cancel", "expired", "budget" (the rest fail with the 402
        # answer in budget_answer), or "lost" (another process holds the lease now).
        self.stop: str | None = "cancel" if batch.status == "cancelling" else None
        self.budget_answer: tuple[int, str] | None = None
        self.in_flight = 0  # calls of this batch under way
        # After a first 402 the batch goes single file: each call waits until no other is
        # in flight (every reservation settled) and holds ``alone`` while it runs, so a 402
        # then means the budget has no room even for this one call.
        self.single_file = False
        self.alone = asyncio.Lock()

    async def run(self) -> None:
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            await self._drive()
            if self.stop != "lost":
                await self._finalize()
        except Exception:
            log.exception("running batch %s failed; it resumes at the next poll", self.batch.id)
        finally:
            heartbeat.cancel()
        if self.stop != "lost":
            await self.tables.release(self.batch.id, self.runner.runner_id)
            self.runner.wake()

    async def _heartbeat(self) -> None:
        period = min(2.0, self.runner.lease_seconds / 3)
        while True:
            await asyncio.sleep(period)
            try:
                status = await self.tables.renew(self.batch.id, self.runner.runner_id,
                                                 time.time() + self.runner.lease_seconds)
            except Exception:
                log.warning("renewing the lease of %s failed", self.batch.id, exc_info=True)
                continue
            if status is None:
                self.stop = "lost"
                return
            if status == "cancelling" and self.stop is None:
                self.stop = "cancel"
            if time.time() > self.batch.expires_at and self.stop is None:
                self.stop = "expired"

    async def _drive(self) -> None:
        """Feeds unfinished requests, in order, to at most ``concurrency`` calls at once."""
        slots = asyncio.Semaphore(self.runner.concurrency)
        calls: set[asyncio.Task] = set()

        def done(task: asyncio.Task) -> None:
            calls.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                log.error("a request of batch %s failed", self.batch.id,
                          exc_info=task.exception())

        cursor = -1
        try:
            while self.stop is None:
                rows = await self.tables.unfinished(self.batch.id, cursor, 100)
                if not rows:
                    break
                for row in rows:
                    await slots.acquire()
                    if self.stop is not None:
                        slots.release()
                        break
                    cursor = row.idx
                    task = asyncio.ensure_future(self._one(row))
                    calls.add(task)
                    task.add_done_callback(done)
            if calls:
                await asyncio.wait(set(calls))
        except BaseException:
            for task in calls:
                task.cancel()
            raise

    async def _one(self, row: RequestRow) -> None:
        request_id = await self._request_id(row)
        if not await self.tables.start(self.batch.id, row, request_id):
            return  # another process got to it first
        while True:
            alone = self.single_file
            status, body, price, retry_after = await (self._call_alone(row) if alone
                                                      else self._counted_call(row))
            if self.stop is not None and status == 402:
                return  # ended by _finalize with the rest (out of budget, cancelled)
            if status == 402 and not alone:
                # Refused while other calls of the batch may have held reservations: once
                # they have settled, the budget may have room for this one after all.
                self.single_file = True
                if await self.tables.start(self.batch.id, row, new_id()):
                    continue
                return
            wait = min(MAX_RETRY_WAIT, max(retry_after or 1.0, 0.1))
            if status not in RETRY_STATUSES or time.time() + wait > self.batch.expires_at:
                break
            if self.stop is not None:
                return  # ended by _finalize with the rest (cancelled, expired, out of budget)
            await asyncio.sleep(wait)
            if self.stop is not None:
                return
            # The refused try has its own ledger row; the next one needs a new id.
            if not await self.tables.start(self.batch.id, row, new_id()):
                return
        outcome = SUCCEEDED if 200 <= status < 300 else ERRORED
        await self.tables.finish(self.batch.id, row, status, body, outcome, price)
        if status == 402 and self.budget_answer is None:
            self.budget_answer = (status, body)
            self.stop = self.stop or "budget"

    async def _counted_call(self, row: RequestRow) -> tuple[int, str, int, float | None]:
        self.in_flight += 1
        try:
            return await self._call(row)
        finally:
            self.in_flight -= 1

    async def _call_alone(self, row: RequestRow) -> tuple[int, str, int, float | None]:
        async with self.alone:
            while self.in_flight and self.stop is None:
                await asyncio.sleep(0.02)
            await self.app.counters_settled()  # their reservations released, not only answered
            if self.stop is not None:
                return 402, "", 0, None
            return await self._counted_call(row)

    async def _request_id(self, row: RequestRow) -> str:
        if row.state != "running" or not row.request_id:
            return new_id()
        # Cut off in an earlier process: see the module's docstring.
        record = await self.app.store.get_usage(row.request_id)
        if record is None or record.status == "ok":
            return row.request_id
        return new_id()

    async def _call(self, row: RequestRow) -> tuple[int, str, int, float | None]:
        """(status, answer body, price in picodollars, retry-after) of one in-process call."""
        batch = self.batch
        key = None
        if batch.key_id is not None:
            key = self.app.keys.by_id(batch.key_id)
        if key is None and self.app.settings.auth:
            err = AuthenticationFailed("The API key that created this batch has been revoked.")
            return err.status, self._error_body(err), 0, None
        request = BatchRequest(batch_id=batch.id, request_id=row.request_id, key=key)
        status, headers, body = await call_in_process(self.app, batch.endpoint,
                                                      row.body.encode(), request)
        price = 0
        if status == 200 and "x-modelmart-cost" in headers:
            price = usd_to_pico(headers["x-modelmart-cost"])
        retry_after = headers.get("retry-after")
        try:
            wait = float(retry_after) if retry_after else None
        except ValueError:
            wait = None
        return status, body.decode("utf-8", "replace"), price, wait

    def _error_body(self, err: GatewayError) -> str:
        dialect = anthropic_messages if self.batch.kind == "anthropic" else openai_chat
        return orjson.dumps(dialect.encode_error(err)[1]).decode()

    async def _finalize(self) -> None:
        """Ends what is left, writes the result files' ids, and closes the batch."""
        batch, tables = self.batch, self.tables
        current = await tables.get_batch(batch.id)
        if current is None or current.status not in ACTIVE:
            return
        now = time.time()
        if self.stop == "cancel" or current.status == "cancelling":
            final, outcome, answer = "cancelled", CANCELED, (None, None)
        elif self.stop == "expired" or now > batch.expires_at:
            final, outcome, answer = "expired", EXPIRED, (None, None)
        elif self.stop == "budget":
            final, outcome, answer = "completed", ERRORED, self.budget_answer
        else:
            final, outcome, answer = "completed", None, (None, None)
        if outcome is not None:
            await tables.close_unfinished(batch.id, outcome, *answer)
        elif (await tables.unfinished(batch.id, -1, 1)):
            return  # something is still to run (a row another process started): go on later
        files = await write_result_files(tables, current) if batch.kind == "openai" else {}
        await tables.set_status(batch.id, final, only_from=ACTIVE, ended_at=now, **files)
        log.info("batch %s %s", batch.id, final)


async def write_result_files(tables: BatchTables, batch: BatchRecord) -> dict:
    """OpenAI's output and error files of a finished batch, as ``files`` rows that point at
    the batch (their content is written from its rows when read). Ids are derived from the
    batch's, so finishing twice makes no second pair."""
    from modelmart.store.batches import FileRecord

    sizes = {"output": 0, "error": 0}
    cursor = -1
    while rows := await tables.results(batch.id, cursor, 1000):
        cursor = rows[-1].idx
        for role in sizes:
            sizes[role] += len(batch_views.lines("openai", rows, role))
    ids = {}
    now = time.time()
    for role, size in sizes.items():
        if size:
            file_id = f"file-{batch.id.removeprefix('batch_')}-{role}"
            await tables.insert_file(FileRecord(
                id=file_id, customer_id=batch.customer_id, key_id=batch.key_id,
                purpose="batch_output", filename=f"{batch.id}_{role}.jsonl", bytes=size,
                created_at=now, batch_id=batch.id, role=role), None)
            ids[f"{role}_file_id"] = file_id
    return ids


async def call_in_process(app, path: str, body: bytes, request: BatchRequest
                          ) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to ``path`` through the app itself (its router, surface, admission),
    as a request of a batch; returns the status, headers and body it answered."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": None, "server": None, "extensions": {},
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"anthropic-version", b"2023-06-01")],
        BATCH_SCOPE: request,
    }
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Future()  # no client to go away: wait until cancelled
        return {"type": "http.disconnect"}

    status, headers, chunks = 500, {}, []

    async def send(message: dict) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = {k.decode("latin-1"): v.decode("latin-1")
                       for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)
