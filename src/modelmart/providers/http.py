"""Upstream HTTP: one pool of kept-alive connections per app (``h1.Client``), errors mapped
to ``core.errors``.

Every call is bounded by the deployment's three timeouts, so a stalled upstream always ends
in an ``UpstreamTimeout`` (504) instead of a hang:

- ``connect``: the TCP (and TLS) connection must be up within it;
- ``first_token``: the first byte of the reply must arrive within it, counted from the start
  of the call — for a JSON reply that is the reply itself, for a stream its first chunk; a
  stream that then goes silent for longer than ``first_token`` is stalled too;
- ``total``: the whole call, a stream's last byte included.

What an upstream sends is untrusted. Messages a client sees name the deployment
(``ProviderConfig.label``), never its URL (it may hold credentials or internal addresses;
``err.detail`` keeps it, without userinfo, for the operator's log); upstream error text is
scrubbed of credentials (``ProviderConfig.scrub``); a status that is not a final error status
(1xx, 3xx, over 599) is a 502; ``retry-after`` values that are not finite non-negative
numbers are ignored, and huge ones capped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import ssl
import time
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import orjson

from modelmart.core.errors import GatewayError, UpstreamError, UpstreamTimeout, error_for_status
from modelmart.core.redact import strip_userinfo

from .base import ATTEMPT_DEADLINE, ProviderConfig, UpstreamLimits
from .connect import ProxyError
from .h1 import Client, ConnectTimeout, DeadlineExceeded, HTTPClosed, HTTPMalformed, LimitExceeded
from .transport import Transport, UpstreamReply

log = logging.getLogger("modelmart.providers")

# Turns an upstream error reply (status, body) into the canonical error.
ErrorDecoder = Callable[[int, bytes], GatewayError]
T = TypeVar("T")

# The deadlines a wait can miss, as ``DeadlineExceeded`` codes.
_FIRST, _STALLED, _TOTAL, _ROUTE = "first", "stalled", "total", "route"
# An upstream's retry-after beyond this is capped (the router never waits past its
# deadline anyway; the client is told at most this).
MAX_RETRY_AFTER = 86400.0
# Characters of upstream error text kept in a message (the ledger and logs keep it too).
MAX_MESSAGE = 4000


def new_session(max_idle_per_host: int = 512, *, limits: UpstreamLimits | None = None,
                proxies: dict[str, str] | None = None) -> Client:
    """The app's default transport (``transport.py``): one pool of upstream connections
    (``providers/h1.py``), with the environment's proxies unless ``proxies`` is given."""
    return Client(max_idle_per_host, limits=limits, proxies=proxies)


def auth_headers(cfg: ProviderConfig) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "modelmart"}
    if cfg.api_key:
        style = cfg.auth_header.lower()
        if style == "bearer":
            headers["authorization"] = f"Bearer {cfg.api_key}"
        else:
            headers[style] = cfg.api_key
    headers.update(cfg.headers)
    return headers


def sane_retry_after(value: Any) -> float | None:
    """A retry delay in seconds fit to act on and to pass on: None for anything that is not a
    finite number ≥ 0 (``inf``, ``1e400``, ``nan``, negative), at most ``MAX_RETRY_AFTER``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER)


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _retry_after(headers) -> float | None:
    """Seconds from ``retry-after-ms`` (OpenAI, more precise) or ``retry-after`` (seconds or
    an HTTP date); None when neither says anything usable."""
    value = headers.get("retry-after-ms")
    if value is not None:
        millis = sane_retry_after(_seconds(value))
        if millis is not None:  # else the less precise header may still say something
            return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return sane_retry_after(seconds)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return sane_retry_after(max(0.0, seconds))  # a date in the past: now


def upstream_error(err: GatewayError, cfg: ProviderConfig, headers=None) -> GatewayError:
    """``err``, decoded from what an upstream sent (an error reply, an error event, a
    malformed reply), made fit to reach a client, a log and the ledger: credentials
    scrubbed, long text cut, a status a client may be given, a sane retry delay (from the
    reply's headers when the body named none)."""
    message = cfg.scrub(err.message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "... (cut)"
    err.message = message
    err.args = (message,)
    if err.param:
        err.param = cfg.scrub(err.param)
    if not 400 <= err.status < 600:
        err.status = 502
    retry = sane_retry_after(err.retry_after)
    if not retry and headers is not None:
        retry = _retry_after(headers)
    err.retry_after = retry
    return err


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


# UpstreamLimits field → what was too much, and the catalog key that sets the bound.
_LIMITS = {
    "header_bytes": ("a reply head over {}", "header_kb"),
    "headers": ("over {} header lines", "headers"),
    "body_bytes": ("a reply body over {}", "body_mb"),
    "event_bytes": ("a stream event over {}", "event_mb"),
}


def limit_error(cfg: ProviderConfig, field: str, limit: int) -> UpstreamError:
    """The 502 for an upstream that sent more than ``cfg.limits.<field>`` allows."""
    what, key = _LIMITS[field]
    amount = str(limit) if field == "headers" else _size(limit)
    return UpstreamError(f"{cfg.label} sent {what.format(amount)} (the bound set by "
                         f"limits.{key}); its reply was dropped")


def _missed(code: str, cfg: ProviderConfig) -> UpstreamTimeout:
    if code == _ROUTE:
        err = UpstreamTimeout(f"{cfg.label} gave no answer before the routing deadline")
        err.route_deadline = True  # the router words it, with the model's deadline
        return err
    if code == _FIRST:
        what = f"sent no first byte within first_token={cfg.first_token_timeout:g}s"
    elif code == _STALLED:
        what = (f"stalled: no data for first_token={cfg.first_token_timeout:g}s "
                "in the middle of the stream")
    else:
        what = f"did not finish within total={cfg.total_timeout:g}s"
    return UpstreamTimeout(f"{cfg.label} {what}")


def _reason(exc: BaseException) -> str:
    """What went wrong, in words that name no address (an OSError's text does)."""
    if isinstance(exc, (HTTPClosed, HTTPMalformed, ProxyError)):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (exc.verify_message or "").split(",")[0]  # "Hostname mismatch, ... 'host'"
        return "its TLS certificate is not trusted" + (f" ({why})" if why else "")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, socket.gaierror):
        return "its host name did not resolve"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, ValueError):
        return "its URL or headers are invalid"
    return type(exc).__name__


def _failure(exc: BaseException, url: str, cfg: ProviderConfig) -> GatewayError:
    """The canonical error for what went wrong on the wire."""
    if isinstance(exc, LimitExceeded):
        err: GatewayError = limit_error(cfg, exc.field, exc.limit)
    elif isinstance(exc, DeadlineExceeded):
        err = _missed(exc.args[0], cfg)
    elif isinstance(exc, ConnectTimeout):
        err = UpstreamTimeout(
            f"{cfg.label} did not accept a connection within {cfg.connect_timeout:g}s")
    elif isinstance(exc, TimeoutError):
        err = UpstreamTimeout(f"{cfg.label} timed out")
    else:
        err = UpstreamError(f"{cfg.label}: the connection failed ({_reason(exc)})")
    # For the operator's log (routing/health.py), never for the client.
    err.detail = cfg.scrub(f"{strip_userinfo(url)}: {exc!r}")  # type: ignore[attr-defined]
    return err


def _bad_status(status: int, cfg: ProviderConfig) -> UpstreamError:
    if status == 407:
        return UpstreamError(f"the proxy in front of {cfg.label} asked the gateway for "
                             "credentials (HTTP 407); check its proxy settings")
    return UpstreamError(f"{cfg.label} answered HTTP {status}, which is not a final error "
                         "status; its reply was dropped")


def _decoded(decode_error: ErrorDecoder, status: int, data: bytes,
             cfg: ProviderConfig) -> GatewayError:
    try:
        return decode_error(status, data)
    except Exception:  # an error body odd enough to trip its decoder is still an error
        log.warning("%s: the error reply (HTTP %d) could not be decoded", cfg.label, status,
                    exc_info=True)
        return error_for_status(status, f"upstream returned HTTP {status}")


def decode_json(raw: bytes, cfg: ProviderConfig, decode: Callable[[Any], T]) -> T:
    """``decode(JSON of raw)`` for a 2xx reply; its errors (a malformed reply, which may
    quote the upstream) come out as ``upstream_error``s."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{cfg.label} sent a reply that is not JSON") from None
    try:
        return decode(data)
    except GatewayError as err:
        raise upstream_error(err, cfg) from None


_WIRE_ERRORS = (OSError, TimeoutError, ValueError)


def _deadlines(cfg: ProviderConfig, now: float, *, stream: bool = False
               ) -> tuple[float, str, float, str]:
    """On the loop's clock, from ``now``: the first byte's deadline and its code, then the
    whole call's and its code. The attempt's routing deadline, if sooner, bounds both; for a
    stream it bounds only the first byte (routing is over once a stream has started)."""
    end_at, end_code = now + cfg.total_timeout, _TOTAL
    first_at, first_code = now + cfg.first_token_timeout, _FIRST
    if first_at >= end_at:
        first_at, first_code = end_at, _TOTAL
    route = ATTEMPT_DEADLINE.get()
    if route is not None:
        route = now + (route - time.monotonic())  # onto the loop's clock
        if route < first_at:
            first_at, first_code = route, _ROUTE
        if route < end_at and not stream:
            end_at, end_code = route, _ROUTE
    return first_at, first_code, end_at, end_code


def _connect_timeout(cfg: ProviderConfig, first_at: float, now: float) -> float:
    return max(0.0, min(cfg.connect_timeout, first_at - now))


async def _raise_for_status(reply: UpstreamReply, end_at: float, end_code: str,
                            decode_error: ErrorDecoder, cfg: ProviderConfig) -> None:
    status = reply.status
    if 200 <= status < 300:
        return
    if not 400 <= status < 600 or status == 407:
        raise _bad_status(status, cfg)  # unread: the connection is dropped, not reused
    data = await reply.read(end_at, end_code)
    raise upstream_error(_decoded(decode_error, status, data, cfg), cfg, reply.headers)


async def post_json(
    http: Transport,
    url: str,
    headers: dict[str, str],
    body: bytes,
    cfg: ProviderConfig,
    decode_error: ErrorDecoder,
) -> bytes:
    """POST and return the body of a 2xx reply; anything else raises a ``GatewayError``."""
    now = http.loop.time()
    first_at, first_code, end_at, end_code = _deadlines(cfg, now)
    reply = None
    try:
        reply = await http.request("POST", url, headers, body,
                                   connect_timeout=_connect_timeout(cfg, first_at, now),
                                   deadline=first_at, why=first_code)
        await _raise_for_status(reply, end_at, end_code, decode_error, cfg)
        return await reply.read(end_at, end_code)
    except GatewayError:
        raise
    except _WIRE_ERRORS as exc:
        raise _failure(exc, url, cfg) from exc
    finally:
        if reply is not None:
            reply.release()


async def open_stream(
    http: Transport,
    url: str,
    headers: dict[str, str],
    body: bytes,
    cfg: ProviderConfig,
    decode_error: ErrorDecoder,
) -> "Body":
    """POST and return the reply's raw body as it arrives (a 2xx reply only; anything else
    raises a ``GatewayError``). The caller closes it (``aclose``): before its end, that
    hangs up on the upstream, which cancels the generation."""
    loop = http.loop
    now = loop.time()
    first_at, first_code, end_at, _ = _deadlines(cfg, now, stream=True)
    try:
        reply = await http.request("POST", url, headers, body,
                                   connect_timeout=_connect_timeout(cfg, first_at, now),
                                   deadline=first_at, why=first_code)
    except _WIRE_ERRORS as exc:
        raise _failure(exc, url, cfg) from exc
    try:
        await _raise_for_status(reply, min(end_at, first_at), first_code, decode_error, cfg)
    except _WIRE_ERRORS as exc:
        reply.close()
        raise _failure(exc, url, cfg) from exc
    except BaseException:
        reply.close()
        raise
    return Body(reply, cfg, url, first_at, first_code, end_at, loop)


class Body:
    """A streamed reply's body as it arrives: ``await read()`` returns what came since the last
    call (b"" at the end). The first chunk is due by the first-byte deadline; each later one
    within ``first_token`` of the one before (a silent stream is as stalled as a silent
    start), and all of them by the total deadline. A class rather than an async generator:
    one layer less on every chunk's way."""

    __slots__ = ("_reply", "_cfg", "_url", "_deadline", "_code", "_end_at", "_loop")

    def __init__(self, reply: UpstreamReply, cfg: ProviderConfig, url: str, deadline: float,
                 code: str, end_at: float, loop: asyncio.AbstractEventLoop) -> None:
        self._reply, self._cfg, self._url = reply, cfg, url
        self._deadline, self._code, self._end_at = deadline, code, end_at
        self._loop = loop

    async def read(self) -> bytes:
        try:
            chunk = await self._reply.next_chunk(self._deadline, self._code)
        except _WIRE_ERRORS as exc:
            raise _failure(exc, self._url, self._cfg) from exc
        if chunk:
            self._deadline = self._loop.time() + self._cfg.first_token_timeout
            self._code = _STALLED
            if self._deadline >= self._end_at:
                self._deadline, self._code = self._end_at, _TOTAL
        return chunk

    async def aclose(self) -> None:
        self._reply.close()  # a body read to its end already gave its connection back
