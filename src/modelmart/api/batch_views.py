"""What clients see of files and batches: OpenAI's ``file`` and ``batch`` objects,
Anthropic's ``message_batch``, and the lines of the results (OpenAI's output and error
files, Anthropic's results JSONL), written from the requests' stored rows."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

import orjson

from modelmart.store.batches import (
    CANCELED, ERRORED, EXPIRED, SUCCEEDED, BatchRecord, FileRecord, RequestRow,
)

_OPENAI_TIMES = {"completed": "completed_at", "cancelled": "cancelled_at",
                 "expired": "expired_at", "failed": "failed_at"}
_ANTHROPIC_STATUS = {"in_progress": "in_progress", "validating": "in_progress",
                     "cancelling": "canceling"}
_NOT_RUN = {
    CANCELED: ("batch_cancelled", "The batch was cancelled before this request was run."),
    EXPIRED: ("batch_expired",
              "This request could not be executed before the completion window expired."),
}


def _int(ts: float | None) -> int | None:
    return None if ts is None else int(ts)


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def file_object(f: FileRecord) -> dict:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": int(f.created_at),
            "filename": f.filename, "purpose": f.purpose, "status": "processed",
            "expires_at": _int(f.expires_at), "status_details": None}


def openai_batch(b: BatchRecord, counts: dict) -> dict:
    failed = counts[ERRORED] + counts[CANCELED] + counts[EXPIRED]
    out = {
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": None,
        "input_file_id": b.input_file_id, "completion_window": "24h", "status": b.status,
        "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "created_at": int(b.created_at), "in_progress_at": _int(b.started_at),
        "expires_at": int(b.expires_at), "finalizing_at": None, "completed_at": None,
        "failed_at": None, "expired_at": None, "cancelling_at": _int(b.cancel_requested_at),
        "cancelled_at": None,
        "request_counts": {"total": b.total, "completed": counts[SUCCEEDED], "failed": failed},
        "metadata": orjson.loads(b.metadata) if b.metadata else None,
    }
    if b.status in _OPENAI_TIMES:
        out[_OPENAI_TIMES[b.status]] = _int(b.ended_at)
    if b.errors:
        out["errors"] = {"object": "list", "data": orjson.loads(b.errors)}
    return out


def anthropic_batch(b: BatchRecord, counts: dict, results_url: str | None) -> dict:
    status = _ANTHROPIC_STATUS.get(b.status, "ended")
    return {
        "id": b.id, "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": counts["pending"] + counts["running"],
                           "succeeded": counts[SUCCEEDED], "errored": counts[ERRORED],
                           "canceled": counts[CANCELED], "expired": counts[EXPIRED]},
        "ended_at": _rfc3339(b.ended_at), "created_at": _rfc3339(b.created_at),
        "expires_at": _rfc3339(b.expires_at), "archived_at": None,
        "cancel_initiated_at": _rfc3339(b.cancel_requested_at),
        "results_url": results_url if status == "ended" else None,
    }


def progress(b: BatchRecord, counts: dict) -> dict:
    """The operator's view (admin API, ``modelmart batches list``)."""
    done = counts[SUCCEEDED] + counts[ERRORED] + counts[CANCELED] + counts[EXPIRED]
    return {"id": b.id, "kind": b.kind, "endpoint": b.endpoint, "status": b.status,
            "customer_id": b.customer_id, "key_id": b.key_id, "total": b.total, "done": done,
            "succeeded": counts[SUCCEEDED], "errored": counts[ERRORED],
            "canceled": counts[CANCELED], "expired": counts[EXPIRED],
            "running": counts["running"], "price_pico": counts["price_pico"],
            "created_at": b.created_at, "ended_at": b.ended_at, "runner": b.runner,
            "lease_until": b.lease_until}


# ---- result lines -------------------------------------------------------------------

def openai_line(row: RequestRow) -> bytes:
    """One line of an output or error file. The stored answer is spliced in as it is."""
    head = b'{"id":' + orjson.dumps(f"batch_req_{row.request_id or row.idx}")
    head += b',"custom_id":' + orjson.dumps(row.custom_id)
    if row.response is None:
        code, message = _NOT_RUN.get(row.outcome, ("batch_failed", "This request was not run."))
        return head + b',"response":null,"error":' + orjson.dumps(
            {"code": code, "message": message}) + b"}\n"
    return (head + b',"response":{"status_code":' + str(row.status_code).encode()
            + b',"request_id":' + orjson.dumps(row.request_id) + b',"body":'
            + row.response.encode() + b'},"error":null}\n')


def is_output(row: RequestRow) -> bool:
    """OpenAI: successes go to the output file, everything else to the error file."""
    return row.outcome == SUCCEEDED


def anthropic_line(row: RequestRow) -> bytes:
    head = b'{"custom_id":' + orjson.dumps(row.custom_id) + b',"result":'
    if row.outcome == SUCCEEDED:
        return head + b'{"type":"succeeded","message":' + row.response.encode() + b"}}\n"
    if row.outcome == ERRORED and row.response is not None:
        return head + b'{"type":"errored","error":' + row.response.encode() + b"}}\n"
    kind = row.outcome if row.outcome in (CANCELED, EXPIRED) else "errored"
    return head + orjson.dumps({"type": kind}) + b"}\n"


def lines(kind: str, rows: Iterable[RequestRow], role: str | None) -> bytes:
    """The lines ``rows`` add to a results file (``role``: OpenAI's "output" or "error")."""
    if kind == "anthropic":
        return b"".join(anthropic_line(r) for r in rows)
    want_output = role == "output"
    return b"".join(openai_line(r) for r in rows if is_output(r) == want_output)
