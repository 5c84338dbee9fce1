"""OpenAI error bodies: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

import orjson

from modelmart.core.errors import CONTEXT_LENGTH_EXCEEDED, GatewayError, error_for_status

# canonical kind -> (OpenAI error type, code)
_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "budget_exceeded": ("insufficient_quota", "insufficient_quota"),
    "permission": ("permission_error", None),
    "not_found": ("not_found_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "api_error": ("api_error", None),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("server_error", "timeout"),
    "internal": ("server_error", None),
}
# For errors that arrive inside a stream, where there is no HTTP status to go by.
_STATUS_FOR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 502,
    "overloaded_error": 503,
}


def encode_error(err: BaseException) -> tuple[int, dict[str, Any]]:
    if not isinstance(err, GatewayError):
        # Never leak internals (a traceback, a repr) to the client.
        return 500, _body("The server had an error while processing your request.", "server_error", None, None)
    kind, code = _TYPES.get(err.kind, ("api_error", None))
    return err.status, _body(err.message, kind, err.param, err.code or code)


def _body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def decode_error(status: int, body: bytes) -> GatewayError:
    message, param, code = _message_and_param(body)
    # Kept for the client: the one code it acts on (shorten the prompt), not the others'.
    code = CONTEXT_LENGTH_EXCEEDED if code == CONTEXT_LENGTH_EXCEEDED else None
    return error_for_status(status, message or f"upstream returned HTTP {status}", param=param,
                            code=code)


def _message_and_param(body: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or None), None, None
    if not isinstance(data, dict):
        return None, None, None
    err = data.get("error", data)
    if isinstance(err, str):
        return err, None, None
    if not isinstance(err, dict):
        return None, None, None
    # vLLM and FastAPI-based hosts use "detail"; everything else "message".
    message = err.get("message") or err.get("detail")
    param, code = err.get("param"), err.get("code")
    return ((str(message) if message else None), (param if isinstance(param, str) else None),
            (code if isinstance(code, str) else None))


def stream_error(err: Any) -> GatewayError:
    """The canonical error for an ``error`` object found in a stream chunk."""
    if not isinstance(err, dict):
        return error_for_status(502, str(err) or "upstream stream failed")
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    if status is None:
        status = _STATUS_FOR_TYPE.get(err.get("type"), 502)
    message = str(err.get("message") or "upstream stream failed")
    param = err.get("param") if isinstance(err.get("param"), str) else None
    return error_for_status(status, message, param=param)
