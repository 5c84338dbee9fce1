"""The typed error tree. Each dialect maps these to its own status codes and bodies.

``status`` is the HTTP status the caller should see. Errors that came from an upstream keep
the upstream's status meaning (an upstream 529 stays 529, a 413 stays 413).
"""

from __future__ import annotations

import re


class GatewayError(Exception):
    status: int = 500
    # A short machine name; dialects map it to their own error type strings.
    kind: str = "internal"
    # A finer machine name, where a client acts on it (OpenAI's error ``code``).
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class InvalidRequest(GatewayError):
    status = 400
    kind = "invalid_request"


# The ``code`` of a prompt longer than the model's context window (OpenAI's name for it).
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
# How upstreams say so: Anthropic (and Claude on Bedrock) "prompt is too long: N tokens >
# M maximum", OpenAI-compatible hosts "This model's maximum context length is N tokens",
# Gemini "The input token count (N) exceeds the maximum number of tokens allowed (M)",
# Bedrock "Input is too long for requested model".
_TOO_LONG = re.compile(r"prompt is too long|input is too long|maximum context length"
                       r"|input token count \(\d+\) exceeds|context window", re.IGNORECASE)


def too_long_code(status: int, message: str) -> str | None:
    """``CONTEXT_LENGTH_EXCEEDED`` for a 400 that says the prompt does not fit."""
    return CONTEXT_LENGTH_EXCEEDED if status == 400 and _TOO_LONG.search(message) else None


class AuthenticationFailed(GatewayError):
    status = 401
    kind = "authentication"


class PaymentRequired(GatewayError):
    """A spend budget is exhausted."""

    status = 402
    kind = "budget_exceeded"


class PermissionDenied(GatewayError):
    status = 403
    kind = "permission"


class NotFound(GatewayError):
    status = 404
    kind = "not_found"


class RequestTooLarge(GatewayError):
    status = 413
    kind = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit"


class UpstreamError(GatewayError):
    """An upstream failed in a way that is not the caller's fault (5xx, bad reply)."""

    status = 502
    kind = "api_error"


class Overloaded(GatewayError):
    """The model (or the whole service) has no capacity now; retry later."""

    status = 503
    kind = "overloaded"


class UpstreamTimeout(GatewayError):
    status = 504
    kind = "timeout"


class InternalError(GatewayError):
    status = 500
    kind = "internal"


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    408: UpstreamTimeout,
    409: InvalidRequest,
    413: RequestTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    500: UpstreamError,
    502: UpstreamError,
    503: Overloaded,
    504: UpstreamTimeout,
    529: Overloaded,
}


def error_for_status(status: int, message: str, **kw) -> GatewayError:
    """The canonical error for an upstream HTTP status, keeping that status when it is an
    error status a client can be given (400-599); anything else (a 304 with a body, 399,
    600, 999) would desynchronise a proxy in front of us, so it becomes a 502 that says so."""
    if not 400 <= status <= 599:
        kw.pop("status", None)
        return UpstreamError(f"upstream answered with HTTP status {status}, which is not an "
                             f"error status: {message}", **kw)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InvalidRequest if 400 <= status < 500 else UpstreamError
    if kw.get("code") is None:
        kw["code"] = too_long_code(status, message)
    return cls(message, status=status, **kw)


def is_retryable(err: BaseException) -> bool:
    """Connection errors, timeouts, 429 and 5xx may be retried; other 4xx never."""
    if isinstance(err, GatewayError):
        return err.status == 429 or err.status >= 500
    return isinstance(err, (ConnectionError, TimeoutError, OSError))
