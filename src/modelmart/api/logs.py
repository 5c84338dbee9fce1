"""Logging: plain text by default, one JSON object a line with ``--log-format json``, and the
request id on every line logged while a request is being served.

The request id lives in a context variable set by ``Admission.call`` for the request's
task, so any module's ``log.warning(...)`` carries it without being passed it. What a log
line holds is what the code logs: never a prompt, a completion or a key (upstream text is
scrubbed of credentials before it is logged).
"""

from __future__ import annotations

import contextvars
import logging
import time

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modelmart_request_id", default=None)
TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modelmart_trace_id", default=None)


def stamp_records() -> None:
    """Every log record made from now on carries the request id (and trace id) of the task
    that logged it, whichever handler formats it. Idempotent."""
    make = logging.getLogRecordFactory()
    if getattr(make, "modelmart", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        record.trace_id = TRACE_ID.get()
        return record

    factory.modelmart = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        trace = getattr(record, "trace_id", None)
        if trace:
            out["trace_id"] = trace
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s[%(process)d]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


def configure(level: str = "info", fmt: str = "text") -> None:
    """Install the root handler (``modelmart serve`` and its workers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    stamp_records()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
