"""Google API error bodies: ``{"error": {"code", "message", "status", "details"?}}``."""

from __future__ import annotations

import re
from typing import Any

import orjson

from modelmart.core.errors import AuthenticationFailed, GatewayError, error_for_status

_STATUS_NAME = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "UNIMPLEMENTED", 409: "ABORTED",
    413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
# For errors inside a stream, where there is no HTTP status: the gRPC name's usual status.
_CODE_FOR_NAME = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ABORTED": 409,
    "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500,
    "UNKNOWN": 500, "DATA_LOSS": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_SECONDS = re.compile(r"([0-9]+(?:\.[0-9]+)?)s")  # "1.2.3s" is no number
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def status_name(status: int) -> str:
    return _STATUS_NAME.get(status, "INVALID_ARGUMENT" if 400 <= status < 500 else "INTERNAL")


def encode_error(err: BaseException) -> tuple[int, dict[str, Any]]:
    if not isinstance(err, GatewayError):
        # Never leak internals (a traceback, a repr) to the client.
        return 500, {"error": {"code": 500, "message": "Internal error encountered.",
                               "status": "INTERNAL"}}
    body: dict[str, Any] = {"code": err.status, "message": err.message,
                            "status": status_name(err.status)}
    if err.param:
        body["details"] = [{"@type": _BAD_REQUEST, "fieldViolations": [
            {"field": err.param, "description": err.message}]}]
    return err.status, {"error": body}


def decode_error(status: int, body: bytes) -> GatewayError:
    err = _error_object(body)
    if err is None:
        text = body.decode("utf-8", "replace").strip()[:500]
        return error_for_status(status, text or f"upstream returned HTTP {status}")
    return _from_object(status, err)


def stream_error(err: Any) -> GatewayError:
    """The canonical error for an ``error`` object found in a stream chunk."""
    if not isinstance(err, dict):
        return error_for_status(502, str(err) or "upstream stream failed")
    code = err.get("code")
    if not (isinstance(code, int) and 400 <= code < 600):
        code = _CODE_FOR_NAME.get(err.get("status"), 502)
    return _from_object(code, err)


def _error_object(body: bytes) -> dict | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list) and data:  # stream endpoints may answer a JSON array
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else None


def _from_object(status: int, err: dict) -> GatewayError:
    message = str(err.get("message") or f"upstream returned HTTP {status}")
    details = [d for d in err.get("details") or () if isinstance(d, dict)]
    param = retry = None
    reason = None
    for d in details:
        kind = d.get("@type")
        if kind == _BAD_REQUEST and d.get("fieldViolations"):
            first = d["fieldViolations"][0]
            param = first.get("field") if isinstance(first, dict) else None
        elif kind == _RETRY_INFO and isinstance(d.get("retryDelay"), str):
            m = _SECONDS.fullmatch(d["retryDelay"])
            retry = float(m.group(1)) if m else None
        elif kind == _ERROR_INFO:
            reason = d.get("reason")
    if reason == "API_KEY_INVALID":
        # Google answers a bad key with 400; it is still an authentication failure (the
        # status the caller sees stays Google's).
        return AuthenticationFailed(message, status=status, retry_after=retry)
    return error_for_status(status, message, param=param, retry_after=retry)
