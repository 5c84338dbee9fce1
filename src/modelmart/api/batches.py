"""The batch APIs: OpenAI's Files and Batches (``/v1/files``, ``/v1/batches``) and
Anthropic's Message Batches (``/v1/messages/batches``). Files and batches belong to the
customer of the key that made them (any of its keys sees them; other customers get 404);
a batch's requests run under the key that created it (``api/batch_runner.py``). Errors are
in the caller's dialect."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from modelmart.core.errors import GatewayError, InvalidRequest, NotFound
from modelmart.core.ids import new_id
from modelmart.dialects import anthropic_messages, openai_chat
from modelmart.store.batches import ACTIVE, BatchRecord, BatchTables, FileRecord
from modelmart.store.records import ApiKey

from . import batch_input, batch_views, multipart
from .admission import Admission
from .batch_runner import BatchRunner
from .http import Receive, Scope, Send, header, parse_json, read_body, send_json

if TYPE_CHECKING:
    from .app import App

WINDOW = 24 * 3600.0  # completion_window "24h", the only one either provider offers
PAGE = 500  # result rows read at a time while a results file is written out
_PREFIXES = ("/v1/files", "/v1/batches", "/v1/messages/batches")


class Batches:
    """The routes, and the runner that executes batches in this process."""

    def __init__(self, app: "App") -> None:
        self.app = app
        s = app.settings
        self.runner = BatchRunner(app, concurrency=s.batch_concurrency,
                                  retention_days=s.batch_retention_days)
        self.tables: BatchTables | None = None

    def routes(self) -> dict:
        """Entries for the app's route table (its other paths come through ``owns``)."""
        return {(m, p): self for m in ("GET", "POST") for p in _PREFIXES}

    @staticmethod
    def owns(path: str) -> bool:
        return path.startswith(tuple(p + "/" for p in _PREFIXES))

    async def start(self) -> None:
        self.tables = BatchTables(self.app.store)
        self.runner.start()

    async def close(self) -> None:
        await self.runner.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        dialect = anthropic_messages if path.startswith("/v1/messages/") else openai_chat
        try:
            key = self._key(scope)
            parts = path.strip("/").split("/")[1:]  # without "v1"
            if parts[0] == "messages":
                result = await self._anthropic(scope["method"], parts[2:], key, scope, receive)
            elif parts[0] == "files":
                result = await self._files(scope["method"], parts[1:], key, scope, receive)
            else:
                result = await self._openai_batches(scope["method"], parts[1:], key, scope,
                                                    receive)
            if isinstance(result, _Content):
                await result.send(self.tables, send)
            else:
                await send_json(send, 200, orjson.dumps(result))
        except GatewayError as err:
            status, body = dialect.encode_error(err)
            await send_json(send, status, body)

    def _key(self, scope: Scope) -> ApiKey | None:
        if not self.app.settings.auth:
            return None
        return Admission._accept(self.app.admission.key_for(scope))

    # ---- OpenAI: files ----------------------------------------------------------------
    async def _files(self, method: str, parts: list[str], key, scope, receive) -> Any:
        if method == "POST" and not parts:
            return await self._upload(key, scope, receive)
        if method == "GET" and not parts:
            q = _query(scope)
            files = await self.tables.list_files(_customer(key), q.get("purpose"),
                                                 q.get("after"), _limit(q, 10_000) + 1)
            return _page([batch_views.file_object(f) for f in files], _limit(q, 10_000))
        f = await self._file(parts[0], key)
        if method == "GET" and len(parts) == 1:
            return batch_views.file_object(f)
        if method == "GET" and parts[1:] == ["content"]:
            return _Content(f, None)
        if method == "DELETE" and len(parts) == 1:
            if f.batch_id is None:
                await self.tables.delete_file(f.id)
            return {"id": f.id, "object": "file", "deleted": f.batch_id is None}
        raise _no_route(method, scope)

    async def _upload(self, key, scope: Scope, receive: Receive) -> dict:
        body = await read_body(scope, receive, self.app.settings.max_file_bytes)
        content_type = (header(scope, b"content-type") or b"").decode("latin-1")
        form = await asyncio.to_thread(multipart.parse, body, content_type)
        purpose = form.get("purpose")
        upload = form.get("file")
        if upload is None or upload.filename is None:
            raise InvalidRequest("Missing the 'file' part of the upload.", param="file")
        if purpose is None or purpose.data.decode("utf-8", "replace") != "batch":
            raise InvalidRequest("Only purpose=batch files are stored here (for /v1/batches).",
                                 param="purpose")
        f = FileRecord(id="file-" + new_id(), customer_id=_customer(key),
                       key_id=key.id if key else None, purpose="batch",
                       filename=upload.filename, bytes=len(upload.data), created_at=time.time())
        await self.tables.insert_file(f, upload.data)
        return batch_views.file_object(f)

    async def _file(self, file_id: str, key) -> FileRecord:
        f = await self.tables.get_file(file_id)
        if f is None or f.customer_id != _customer(key):
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return f

    # ---- OpenAI: batches ----------------------------------------------------------------
    async def _openai_batches(self, method: str, parts: list[str], key, scope, receive) -> Any:
        if method == "POST" and not parts:
            return await self._create_openai(key, await _json(scope, receive, 1 << 20))
        if method == "GET" and not parts:
            q = _query(scope)
            limit = _limit(q, 20)
            batches = await self.tables.list_batches(kind="openai", customer_id=_customer(key),
                                                     after=q.get("after"), limit=limit + 1)
            counts = await self.tables.counts([b.id for b in batches])
            return _page([batch_views.openai_batch(b, counts[b.id]) for b in batches], limit)
        batch = await self._batch(parts[0], key, "openai")
        if method == "GET" and len(parts) == 1:
            return await self._openai_view(batch)
        if method == "POST" and parts[1:] == ["cancel"]:
            if batch.status not in (*ACTIVE, "validating"):
                raise InvalidRequest(f"Cannot cancel a batch with status '{batch.status}'.",
                                     status=409)
            return await self._openai_view(await self._cancel(batch))
        raise _no_route(method, scope)

    async def _create_openai(self, key, data: dict) -> dict:
        window = data.get("completion_window", "24h")
        if window != "24h":
            raise InvalidRequest("completion_window must be '24h'.", param="completion_window")
        endpoint = data.get("endpoint")
        if not isinstance(endpoint, str):
            raise InvalidRequest("endpoint is required, e.g. /v1/chat/completions.",
                                 param="endpoint")
        file_id = data.get("input_file_id")
        f = await self._file(file_id if isinstance(file_id, str) else "", key)
        if f.purpose != "batch":
            raise InvalidRequest(f"File {f.id} has purpose {f.purpose!r}, not 'batch'.",
                                 param="input_file_id")
        metadata = data.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= 16
                                         and all(isinstance(v, str) for v in metadata.values())):
            raise InvalidRequest("metadata: at most 16 string values.", param="metadata")
        content = await self.tables.file_content(f.id) or b""
        requests, errors = await asyncio.to_thread(batch_input.openai_requests, content,
                                                   endpoint)
        now = time.time()
        batch = BatchRecord(
            id="batch_" + new_id(), kind="openai", endpoint=endpoint,
            customer_id=_customer(key), key_id=key.id if key else None, input_file_id=f.id,
            status="failed" if errors else "validating", total=0 if errors else len(requests),
            created_at=now, expires_at=now + WINDOW, ended_at=now if errors else None,
            metadata=orjson.dumps(metadata).decode() if metadata else None,
            errors=orjson.dumps(errors).decode() if errors else None)
        await self.tables.create_batch(batch, [] if errors else requests)
        self.runner.wake()
        return await self._openai_view(await self.tables.get_batch(batch.id))

    async def _openai_view(self, batch: BatchRecord) -> dict:
        return batch_views.openai_batch(batch, (await self.tables.counts([batch.id]))[batch.id])

    # ---- Anthropic: message batches -------------------------------------------------------
    async def _anthropic(self, method: str, parts: list[str], key, scope, receive) -> Any:
        if method == "POST" and not parts:
            data = await _json(scope, receive, self.app.settings.max_file_bytes)
            requests = await asyncio.to_thread(batch_input.anthropic_requests, data)
            now = time.time()
            batch = BatchRecord(
                id="msgbatch_" + new_id(), kind="anthropic",
                endpoint=batch_input.ANTHROPIC_ENDPOINT, customer_id=_customer(key),
                key_id=key.id if key else None, input_file_id=None, status="validating",
                total=len(requests), created_at=now, expires_at=now + WINDOW)
            await self.tables.create_batch(batch, requests)
            self.runner.wake()
            return await self._anthropic_view(await self.tables.get_batch(batch.id), scope)
        if method == "GET" and not parts:
            q = _query(scope)
            limit = _limit(q, 20, 1000)
            batches = await self.tables.list_batches(
                kind="anthropic", customer_id=_customer(key), after=q.get("after_id"),
                before=q.get("before_id"), limit=limit + 1)
            more = len(batches) > limit
            batches = batches[1:] if more and q.get("before_id") else batches[:limit]
            data = [await self._anthropic_view(b, scope) for b in batches]
            return {"data": data, "has_more": more,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None}
        batch = await self._batch(parts[0], key, "anthropic")
        if method == "GET" and len(parts) == 1:
            return await self._anthropic_view(batch, scope)
        if method == "POST" and parts[1:] == ["cancel"]:
            if batch.status in (*ACTIVE, "validating"):
                batch = await self._cancel(batch)
            return await self._anthropic_view(batch, scope)
        if method == "GET" and parts[1:] == ["results"]:
            if batch.status in (*ACTIVE, "validating"):
                raise NotFound(f"Message Batch {batch.id} has not finished processing; its "
                               f"results are available once processing_status is 'ended'.")
            return _Content(None, batch)
        if method == "DELETE" and len(parts) == 1:
            if batch.status in (*ACTIVE, "validating"):
                raise InvalidRequest(f"Message Batch {batch.id} is still processing; cancel "
                                     f"it and wait for it to end before deleting it.")
            await self.tables.delete_batch(batch.id)
            return {"id": batch.id, "type": "message_batch_deleted"}
        raise _no_route(method, scope)

    async def _anthropic_view(self, batch: BatchRecord, scope: Scope) -> dict:
        counts = (await self.tables.counts([batch.id]))[batch.id]
        return batch_views.anthropic_batch(batch, counts, _results_url(scope, batch.id))

    # ---- both ---------------------------------------------------------------------------
    async def _batch(self, batch_id: str, key, kind: str) -> BatchRecord:
        batch = await self.tables.get_batch(batch_id)
        if batch is None or batch.kind != kind or batch.customer_id != _customer(key):
            raise NotFound(f"No such batch: {batch_id}", param="batch_id")
        return batch

    async def _cancel(self, batch: BatchRecord) -> BatchRecord:
        await self.tables.set_status(batch.id, "cancelling", only_from=("in_progress",),
                                     cancel_requested_at=time.time())
        self.runner.wake(cancelled=batch.id)
        return await self.tables.get_batch(batch.id)


class _Content:
    """A results file (OpenAI output/error, Anthropic results) or an uploaded file's bytes,
    sent as it is read: a page of rows at a time, never the whole file in memory."""

    def __init__(self, file: FileRecord | None, batch: BatchRecord | None) -> None:
        self.file, self.batch = file, batch

    async def send(self, tables: BatchTables, send: Send) -> None:
        f = self.file
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/jsonl")]})
        if f is not None and f.batch_id is None:
            data = await tables.file_content(f.id) or b""
            await send({"type": "http.response.body", "body": data})
            return
        batch = self.batch or await tables.get_batch(f.batch_id)
        role = f.role if f is not None else None
        cursor = -1
        while rows := await tables.results(batch.id, cursor, PAGE):
            cursor = rows[-1].idx
            data = batch_views.lines(batch.kind, rows, role)
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _customer(key: ApiKey | None) -> int | None:
    return key.customer_id if key is not None else None


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


def _limit(q: dict, default: int, most: int = 10_000) -> int:
    value = q.get("limit")
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise InvalidRequest(f"limit must be a whole number from 1 to {most}.", param="limit")
    return int(value)


def _page(data: list[dict], limit: int) -> dict:
    more = len(data) > limit
    data = data[:limit]
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


async def _json(scope: Scope, receive: Receive, limit: int) -> dict:
    data = parse_json(await read_body(scope, receive, limit))
    if not isinstance(data, dict):
        raise InvalidRequest("Expected a JSON object.")
    return data


def _results_url(scope: Scope, batch_id: str) -> str:
    path = f"/v1/messages/batches/{batch_id}/results"
    host = header(scope, b"host")
    if host is None:
        return path
    scheme = (header(scope, b"x-forwarded-proto") or scope.get("scheme", "http").encode())
    return f"{scheme.decode('latin-1')}://{host.decode('latin-1')}{path}"


def _no_route(method: str, scope: Scope) -> GatewayError:
    return NotFound(f"No route for {method} {scope['path']}.")
