"""Files, batches and their requests (``api/batches.py`` serves them, ``api/batch_runner.py``
runs them).

Everything lives in the database, uploaded files included: any worker or replica can serve a
file, and any can resume a batch whose runner died, with nothing to share but the database
the ledger already needs. A batch's output and error files are not stored twice: they are
views of its requests' rows, written out when read.

A request's row moves ``pending`` → ``running`` (with the ledger request id of this run,
committed before the call) → ``done`` (with its answer). Every write is one statement, and
each is a compare-and-set, so a runner that lost its lease cannot overwrite another's work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# DDL of migration 0004 (store/migrations.py). Bodies and answers are JSON text; an uploaded
# file is bytes as it came (it may not be UTF-8; that is reported when a batch uses it).
DDL: tuple = (
    {"sqlite": "CREATE TABLE files (id TEXT PRIMARY KEY, customer_id INTEGER, key_id INTEGER, "
               "purpose TEXT NOT NULL, filename TEXT NOT NULL, bytes INTEGER NOT NULL, "
               "created_at REAL NOT NULL, expires_at REAL, batch_id TEXT, role TEXT, "
               "content BLOB)",
     "postgres": "CREATE TABLE files (id TEXT PRIMARY KEY, customer_id BIGINT, key_id BIGINT, "
                 "purpose TEXT NOT NULL, filename TEXT NOT NULL, bytes BIGINT NOT NULL, "
                 "created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION, "
                 "batch_id TEXT, role TEXT, content BYTEA)"},
    "CREATE INDEX files_customer ON files (customer_id, id)",
    """CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        customer_id {int},
        key_id {int},
        input_file_id TEXT,
        status TEXT NOT NULL,
        total {int} NOT NULL,
        created_at {real} NOT NULL,
        expires_at {real} NOT NULL,
        started_at {real},
        cancel_requested_at {real},
        ended_at {real},
        output_file_id TEXT,
        error_file_id TEXT,
        metadata TEXT,
        errors TEXT,
        runner TEXT,
        lease_until {real})""",
    "CREATE INDEX batches_customer ON batches (customer_id, id)",
    "CREATE INDEX batches_status ON batches (status)",
    """CREATE TABLE batch_requests (
        batch_id TEXT NOT NULL,
        idx {int} NOT NULL,
        custom_id TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL,
        request_id TEXT,
        status_code {int},
        response TEXT,
        outcome TEXT,
        price_pico {int} NOT NULL DEFAULT 0,
        finished_at {real},
        PRIMARY KEY (batch_id, idx))""",
)

# Batch statuses (OpenAI's words; the Anthropic surface maps them to its own).
ACTIVE = ("in_progress", "cancelling")
# Outcomes of a finished request (Anthropic's words); OpenAI counts all but the first failed.
SUCCEEDED, ERRORED, CANCELED, EXPIRED = "succeeded", "errored", "canceled", "expired"

FILE_COLUMNS = ("id", "customer_id", "key_id", "purpose", "filename", "bytes", "created_at",
                "expires_at", "batch_id", "role")
BATCH_COLUMNS = ("id", "kind", "endpoint", "customer_id", "key_id", "input_file_id", "status",
                 "total", "created_at", "expires_at", "started_at", "cancel_requested_at",
                 "ended_at", "output_file_id", "error_file_id", "metadata", "errors", "runner",
                 "lease_until")
REQUEST_COLUMNS = ("idx", "custom_id", "body", "state", "request_id", "status_code",
                   "response", "outcome", "price_pico")


@dataclass(slots=True)
class FileRecord:
    id: str
    customer_id: int | None
    key_id: int | None
    purpose: str  # "batch" (uploaded) or "batch_output" (a batch's output or errors)
    filename: str
    bytes: int
    created_at: float
    expires_at: float | None = None
    batch_id: str | None = None  # batch_output files: the batch whose rows they show
    role: str | None = None  # batch_output files: "output" or "error"


@dataclass(slots=True)
class BatchRecord:
    id: str
    kind: str  # "openai" | "anthropic": the API that made it, and the shape of its results
    endpoint: str  # the path each request is served by, e.g. /v1/chat/completions
    customer_id: int | None
    key_id: int | None  # the key its requests run under (limits, budget, models)
    input_file_id: str | None
    status: str  # validating, in_progress, cancelling, completed, cancelled, expired, failed
    total: int
    created_at: float
    expires_at: float
    started_at: float | None = None
    cancel_requested_at: float | None = None
    ended_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: str | None = None  # JSON text
    errors: str | None = None  # JSON text: why a batch failed validation
    runner: str | None = None  # the process running it now ("host/pid/tag")
    lease_until: float | None = None


@dataclass(slots=True)
class RequestRow:
    idx: int
    custom_id: str
    body: str
    state: str  # pending | running | done
    request_id: str | None
    status_code: int | None = None
    response: str | None = None  # the answer's JSON body, success or error
    outcome: str | None = None
    price_pico: int = 0


def _select(columns: tuple[str, ...]) -> str:
    return ", ".join(columns)


def _owner(column: str, customer_id: int | None) -> tuple[str, list]:
    return (f"{column} IS NULL", []) if customer_id is None else (f"{column} = ?", [customer_id])


# Rows a multi-row INSERT of requests holds: 5 columns each, under SQLite's 32,766 variables
# and PostgreSQL's 65,535 parameters; and a bounded statement size for large bodies.
_INSERT_ROWS = 500
_INSERT_BYTES = 4 << 20


class BatchTables:
    """The queries, over a ``SqlStore``'s ``_all`` / ``_one`` / ``_execute``."""

    def __init__(self, store) -> None:
        self.store = store

    # ---- files ----------------------------------------------------------------------
    async def insert_file(self, f: FileRecord, content: bytes | None) -> None:
        cols = (*FILE_COLUMNS, "content")
        await self.store._execute(
            f"INSERT INTO files ({_select(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            "ON CONFLICT (id) DO NOTHING",
            [*(getattr(f, c) for c in FILE_COLUMNS), content])

    async def get_file(self, file_id: str) -> FileRecord | None:
        row = await self.store._one(f"SELECT {_select(FILE_COLUMNS)} FROM files WHERE id = ?",
                                    (file_id,))
        return FileRecord(*row) if row else None

    async def file_content(self, file_id: str) -> bytes | None:
        row = await self.store._one("SELECT content FROM files WHERE id = ?", (file_id,))
        return bytes(row[0]) if row and row[0] is not None else None

    async def list_files(self, customer_id: int | None, purpose: str | None, after: str | None,
                         limit: int) -> list[FileRecord]:
        cond, params = _owner("customer_id", customer_id)
        for clause, value in (("purpose = ?", purpose), ("id < ?", after)):
            if value is not None:
                cond += f" AND {clause}"
                params.append(value)
        rows = await self.store._all(f"SELECT {_select(FILE_COLUMNS)} FROM files WHERE {cond} "
                                     f"ORDER BY id DESC LIMIT {int(limit)}", params)
        return [FileRecord(*row) for row in rows]

    async def delete_file(self, file_id: str) -> bool:
        return await self.store._execute("DELETE FROM files WHERE id = ?", (file_id,)) > 0

    # ---- batches --------------------------------------------------------------------
    async def create_batch(self, b: BatchRecord, requests: list[tuple[int, str, str]]) -> None:
        """Stores the batch as ``validating``, then its requests in chunks, then makes it
        ``in_progress``: a runner never sees a batch whose rows are still being written
        (one killed meanwhile stays ``validating``, and ``fail_stale`` fails it)."""
        await self.store._execute(
            f"INSERT INTO batches ({_select(BATCH_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(BATCH_COLUMNS))})",
            [getattr(b, c) for c in BATCH_COLUMNS])
        chunk: list = []
        size = 0
        for idx, custom_id, body in requests:
            chunk.append((idx, custom_id, body))
            size += len(body)
            if len(chunk) >= _INSERT_ROWS or size >= _INSERT_BYTES:
                await self._insert_requests(b.id, chunk)
                chunk, size = [], 0
        await self._insert_requests(b.id, chunk)
        if b.status == "validating":
            await self.store._execute(
                "UPDATE batches SET status = 'in_progress', started_at = ? WHERE id = ? "
                "AND status = 'validating'", (time.time(), b.id))

    async def _insert_requests(self, batch_id: str, chunk: list) -> None:
        if not chunk:
            return
        params: list = []
        for idx, custom_id, body in chunk:
            params += [batch_id, idx, custom_id, body, "pending"]
        values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        await self.store._execute(
            f"INSERT INTO batch_requests (batch_id, idx, custom_id, body, state) VALUES {values}",
            params)

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        row = await self.store._one(f"SELECT {_select(BATCH_COLUMNS)} FROM batches WHERE id = ?",
                                    (batch_id,))
        return BatchRecord(*row) if row else None

    async def list_batches(self, *, kind: str | None = None, customer_id: int | None = None,
                           any_customer: bool = False, status: str | None = None,
                           after: str | None = None, before: str | None = None,
                           limit: int = 20) -> list[BatchRecord]:
        """Newest first; ``after``: older than that id, ``before``: newer (nearest first)."""
        conds, params = [], []
        if not any_customer:
            cond, params = _owner("customer_id", customer_id)
            conds.append(cond)
        for clause, value in (("kind = ?", kind), ("status = ?", status), ("id < ?", after),
                              ("id > ?", before)):
            if value is not None:
                conds.append(clause)
                params.append(value)
        where = " WHERE " + " AND ".join(conds) if conds else ""
        order = "ASC" if before is not None else "DESC"
        rows = await self.store._all(f"SELECT {_select(BATCH_COLUMNS)} FROM batches{where} "
                                     f"ORDER BY id {order} LIMIT {int(limit)}", params)
        out = [BatchRecord(*row) for row in rows]
        return out[::-1] if before is not None else out

    async def counts(self, batch_ids: list[str]) -> dict[str, dict]:
        """Per batch: requests by state and outcome, and the price so far (picodollars)."""
        out: dict[str, dict] = {i: {"pending": 0, "running": 0, SUCCEEDED: 0, ERRORED: 0,
                                    CANCELED: 0, EXPIRED: 0, "price_pico": 0} for i in batch_ids}
        if not batch_ids:
            return out
        money = self.store.sql_dialect.money_sum
        rows = await self.store._all(
            f"SELECT batch_id, state, outcome, COUNT(*), {money}(price_pico) FROM batch_requests "
            f"WHERE batch_id IN ({', '.join('?' * len(batch_ids))}) "
            "GROUP BY batch_id, state, outcome", batch_ids)
        for batch_id, state, outcome, count, price in rows:
            item = out[batch_id]
            item[outcome if state == "done" else state] += int(count)
            item["price_pico"] += int(price or 0)
        return out

    async def set_status(self, batch_id: str, status: str, *, only_from: tuple[str, ...],
                         **times) -> bool:
        """Moves a batch to ``status`` if it is in one of ``only_from``; ``times`` sets
        columns too (``ended_at=...``, ``output_file_id=...``)."""
        sets = ", ".join(["status = ?", *(f"{c} = ?" for c in times)])
        marks = ", ".join("?" * len(only_from))
        return await self.store._execute(
            f"UPDATE batches SET {sets} WHERE id = ? AND status IN ({marks})",
            [status, *times.values(), batch_id, *only_from]) > 0

    async def stale_validating(self, older_than: float) -> bool:
        return await self.store._one("SELECT 1 FROM batches WHERE status = 'validating' AND "
                                     "created_at < ? LIMIT 1", (older_than,)) is not None

    async def fail_stale(self, older_than: float) -> int:
        """Batches left ``validating`` by a process killed while it stored their rows."""
        return await self.store._execute(
            "UPDATE batches SET status = 'failed', ended_at = ?, errors = ? "
            "WHERE status = 'validating' AND created_at < ?",
            (time.time(), '[{"code": "interrupted", "message": "The server stopped while it '
                          'stored this batch; create it again."}]', older_than))

    async def delete_batch(self, batch_id: str) -> None:
        """A batch, its requests and its result files; the answers go with them."""
        for sql in ("DELETE FROM batch_requests WHERE batch_id = ?",
                    "DELETE FROM files WHERE batch_id = ?", "DELETE FROM batches WHERE id = ?"):
            await self.store._execute(sql, (batch_id,))

    async def expired(self, before: float, limit: int = 100) -> tuple[list[str], list[str]]:
        """(ended batches, uploaded files) older than ``before``: what retention removes."""
        batches = await self.store._all(
            f"SELECT id FROM batches WHERE ended_at < ? ORDER BY id LIMIT {int(limit)}",
            (before,))
        files = await self.store._all(
            f"SELECT id FROM files WHERE batch_id IS NULL AND created_at < ? ORDER BY id "
            f"LIMIT {int(limit)}", (before,))
        return [row[0] for row in batches], [row[0] for row in files]

    # ---- leases ---------------------------------------------------------------------
    async def active(self, limit: int = 50) -> list[BatchRecord]:
        rows = await self.store._all(
            f"SELECT {_select(BATCH_COLUMNS)} FROM batches WHERE status IN ('in_progress', "
            f"'cancelling') ORDER BY id LIMIT {int(limit)}")
        return [BatchRecord(*row) for row in rows]

    async def claim(self, batch_id: str, seen_runner: str | None, runner: str,
                    until: float) -> bool:
        """Takes the batch's lease if its holder is still the one seen (compare-and-set)."""
        return await self.store._execute(
            "UPDATE batches SET runner = ?, lease_until = ? WHERE id = ? "
            "AND COALESCE(runner, '') = ? AND status IN ('in_progress', 'cancelling')",
            (runner, until, batch_id, seen_runner or "")) > 0

    async def renew(self, batch_id: str, runner: str, until: float) -> str | None:
        """Extends the lease; returns the batch's status, or None if the lease is lost."""
        if not await self.store._execute(
                "UPDATE batches SET lease_until = ? WHERE id = ? AND runner = ?",
                (until, batch_id, runner)):
            return None
        row = await self.store._one("SELECT status FROM batches WHERE id = ?", (batch_id,))
        return row[0] if row else None

    async def release(self, batch_id: str, runner: str) -> None:
        await self.store._execute("UPDATE batches SET runner = NULL, lease_until = NULL "
                                  "WHERE id = ? AND runner = ?", (batch_id, runner))

    # ---- requests -------------------------------------------------------------------
    async def unfinished(self, batch_id: str, after_idx: int, limit: int) -> list[RequestRow]:
        rows = await self.store._all(
            f"SELECT {_select(REQUEST_COLUMNS)} FROM batch_requests WHERE batch_id = ? "
            f"AND idx > ? AND state <> 'done' ORDER BY idx LIMIT {int(limit)}",
            (batch_id, after_idx))
        return [RequestRow(*row) for row in rows]

    async def start(self, batch_id: str, row: RequestRow, request_id: str) -> bool:
        """``row`` is running under ``request_id`` (committed before the call is made)."""
        changed = await self.store._execute(
            "UPDATE batch_requests SET state = 'running', request_id = ? WHERE batch_id = ? "
            "AND idx = ? AND state <> 'done' AND COALESCE(request_id, '') = ?",
            (request_id, batch_id, row.idx, row.request_id or ""))
        if changed:
            row.state, row.request_id = "running", request_id
        return changed > 0

    async def finish(self, batch_id: str, row: RequestRow, status_code: int, response: str,
                     outcome: str, price_pico: int) -> bool:
        return await self.store._execute(
            "UPDATE batch_requests SET state = 'done', status_code = ?, response = ?, "
            "outcome = ?, price_pico = ?, finished_at = ? WHERE batch_id = ? AND idx = ? "
            "AND request_id = ? AND state = 'running'",
            (status_code, response, outcome, price_pico, time.time(), batch_id, row.idx,
             row.request_id)) > 0

    async def close_unfinished(self, batch_id: str, outcome: str, status_code: int | None = None,
                               response: str | None = None) -> int:
        """Ends every request not done (cancelled, expired, or out of budget); the runner
        calls it once no call of the batch is under way."""
        return await self.store._execute(
            "UPDATE batch_requests SET state = 'done', outcome = ?, status_code = ?, "
            "response = ?, finished_at = ? WHERE batch_id = ? AND state <> 'done'",
            (outcome, status_code, response, time.time(), batch_id))

    async def results(self, batch_id: str, after_idx: int, limit: int) -> list[RequestRow]:
        rows = await self.store._all(
            f"SELECT {_select(REQUEST_COLUMNS)} FROM batch_requests WHERE batch_id = ? "
            f"AND idx > ? AND state = 'done' ORDER BY idx LIMIT {int(limit)}",
            (batch_id, after_idx))
        return [RequestRow(*row) for row in rows]
