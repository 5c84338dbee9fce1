"""AWS-shaped errors: ``{"message": ...}`` bodies typed by the ``x-amzn-errortype`` header
(botocore reads the error code from that header, or from ``__type`` in the body, and
raises ``client.exceptions.<Code>``), and typed exception messages inside a stream."""

from __future__ import annotations

import orjson

from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, InvalidRequest, NotFound, Overloaded, PermissionDenied,
    RateLimited, UpstreamError, UpstreamTimeout, error_for_status, too_long_code,
)

ERROR_TYPE_HEADER = "x-amzn-errortype"

_TYPE_BY_STATUS = {
    400: "ValidationException", 401: "UnrecognizedClientException",
    402: "AccessDeniedException", 403: "AccessDeniedException",
    404: "ResourceNotFoundException", 408: "ModelTimeoutException",
    424: "ModelErrorException", 429: "ThrottlingException",
    500: "InternalServerException", 502: "InternalServerException",
    503: "ServiceUnavailableException", 529: "ServiceUnavailableException",
    504: "ModelTimeoutException",
}
_CLASS_BY_TYPE: dict[str, type[GatewayError]] = {
    "ValidationException": InvalidRequest,
    "AccessDeniedException": PermissionDenied,
    "UnrecognizedClientException": AuthenticationFailed,
    "InvalidSignatureException": AuthenticationFailed,
    "IncompleteSignatureException": AuthenticationFailed,
    "MissingAuthenticationTokenException": AuthenticationFailed,
    "ExpiredTokenException": AuthenticationFailed,
    "ResourceNotFoundException": NotFound,
    "ThrottlingException": RateLimited,
    "ServiceQuotaExceededException": RateLimited,
    "ModelNotReadyException": Overloaded,  # the model is loading: retry later
    "ModelTimeoutException": UpstreamTimeout,
    "ModelErrorException": UpstreamError,
    "ModelStreamErrorException": UpstreamError,
    "InternalServerException": UpstreamError,
    "ServiceUnavailableException": Overloaded,
}
# Exceptions a ConverseStream may carry mid-stream, with their modelled HTTP status.
STREAM_EXCEPTIONS = {
    "validationException": 400, "throttlingException": 429,
    "internalServerException": 500, "modelStreamErrorException": 424,
    "serviceUnavailableException": 503,
}


def error_type(err: GatewayError) -> str:
    """The AWS error code for ``err``; an error that already names one (SigV4 failures set
    the header) keeps it."""
    named = err.headers.get(ERROR_TYPE_HEADER)
    if named:
        return named
    known = _TYPE_BY_STATUS.get(err.status)
    if known is not None:
        return known
    return "ValidationException" if 400 <= err.status < 500 else "InternalServerException"


def encode_error(err: GatewayError) -> tuple[int, dict]:
    return err.status, {"message": err.message, "__type": error_type(err)}


def error_headers(err: GatewayError) -> dict[str, str]:
    """Headers that go with ``encode_error``'s body; botocore takes the code from here."""
    return {ERROR_TYPE_HEADER: error_type(err)}


def decode_error(status: int, body: bytes, headers: dict[str, str] | None = None
                 ) -> GatewayError:
    """The canonical error for an upstream error reply, keeping the upstream status. The
    type comes from the header (``ValidationException:http://...`` as AWS writes it), else
    from the body, else from the status."""
    data = _json(body)
    code = (headers or {}).get(ERROR_TYPE_HEADER) or data.get("__type") or data.get("code")
    code = str(code).split(":", 1)[0].rsplit("#", 1)[-1] if code else ""
    message = data.get("message") or data.get("Message")
    if not isinstance(message, str) or not message:
        message = _fallback_message(status, body, code)
    # Without a type (a proxy's page, or a decoder that never saw the headers) the status
    # still says which modelled exception it was: 424 is a model failure, not ours.
    cls = _CLASS_BY_TYPE.get(code or _TYPE_BY_STATUS.get(status, ""))
    if cls is None:
        return error_for_status(status, message)
    return cls(message, status=status, code=too_long_code(status, message))


def _json(body: bytes) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _fallback_message(status: int, body: bytes, code: str) -> str:
    text = body.decode("utf-8", "replace").strip()
    if len(text) > 200:
        text = text[:200] + "..."
    what = f" {code}" if code else ""
    return f"upstream returned HTTP {status}{what}" + (f": {text}" if text else "")


# ---- in-stream exceptions ---------------------------------------------------------------


def stream_exception_type(err: GatewayError) -> str:
    if err.status == 429:
        return "throttlingException"
    if err.status in (503, 529):
        return "serviceUnavailableException"
    if err.status == 500:
        return "internalServerException"
    if 400 <= err.status < 500 and err.status not in (408, 424):
        return "validationException"
    return "modelStreamErrorException"  # the model failed: bad gateway, timeouts, ...


def stream_exception_body(err: GatewayError) -> bytes:
    body: dict = {"message": err.message}
    if stream_exception_type(err) == "modelStreamErrorException":
        body["originalStatusCode"] = err.status
    return orjson.dumps(body)


def error_from_stream(exception_type: str, payload: bytes) -> GatewayError:
    """The canonical error for an exception message met inside a stream."""
    data = _json(payload)
    message = data.get("message") if isinstance(data.get("message"), str) else None
    status = STREAM_EXCEPTIONS.get(exception_type, 500)
    code = exception_type[:1].upper() + exception_type[1:]
    cls = _CLASS_BY_TYPE.get(code)
    text = message or f"upstream stream failed ({exception_type or 'error'})"
    return cls(text, status=status) if cls else error_for_status(status, text)
