"""Anthropic error bodies: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""

from __future__ import annotations

import orjson

from modelmart.core.errors import GatewayError, error_for_status

_TYPE_BY_STATUS = {
    400: "invalid_request_error", 409: "invalid_request_error", 422: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error", 502: "api_error",
    # The SDK's ErrorType lists timeout_error, which the API sends with 504.
    504: "timeout_error",
    503: "overloaded_error", 529: "overloaded_error",
}
# The status an error event met mid-stream stands for (the HTTP status was already 200).
STATUS_BY_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504,
    "overloaded_error": 529,
}


def error_type(status: int) -> str:
    known = _TYPE_BY_STATUS.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(err: GatewayError) -> dict:
    return {"type": "error", "error": {"type": error_type(err.status), "message": err.message}}


def encode_error(err: GatewayError) -> tuple[int, dict]:
    return err.status, error_body(err)


def decode_error(status: int, body: bytes) -> GatewayError:
    """The canonical error for an upstream error reply; the upstream status is kept, and a
    body that is not Anthropic's JSON (a proxy's HTML page) still yields a useful message."""
    return error_for_status(status, _message(status, body))


def _message(status: int, body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    text = body.decode("utf-8", "replace").strip()
    if len(text) > 200:
        text = text[:200] + "..."
    return f"upstream returned HTTP {status}" + (f": {text}" if text else "")


def error_from_event(data: dict) -> GatewayError:
    """The canonical error for an ``error`` event in a stream."""
    inner = data.get("error") if isinstance(data.get("error"), dict) else {}
    kind = inner.get("type")
    message = inner.get("message") if isinstance(inner.get("message"), str) else None
    status = STATUS_BY_TYPE.get(kind, 500)
    return error_for_status(status, message or f"upstream stream failed ({kind or 'error'})")
