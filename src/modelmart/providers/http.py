"""Upstream HTTP: one pool of kept-alive connections per app (``h1.Client``), errors mapped
to ``core.errors``.

Every call is bounded by the deployment's three timeouts, so a stalled upstream always ends
in an ``UpstreamTimeout`` (504) instead of a hang:

- ``connect``: the TCP (and TLS) connection must be up within it;
- ``first_token``: the first byte of the reply must arrive within it, counted from the start
  of the call — for a JSON reply that is the reply itself, for a stream its first chunk; a
  stream that then goes silent for longer than ``first_token`` is stalled too;
- ``total``: the whole call, a stream's last byte included.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Callable

from modelmart.core.errors import GatewayError, UpstreamError, UpstreamTimeout

from .base import ATTEMPT_DEADLINE, ProviderConfig
from .h1 import Client, ConnectTimeout, DeadlineExceeded, Reply

# Turns an upstream error reply (status, body) into the canonical error.
ErrorDecoder = Callable[[int, bytes], GatewayError]

# The deadlines a wait can miss, as ``DeadlineExceeded`` codes.
_FIRST, _STALLED, _TOTAL, _ROUTE = "first", "stalled", "total", "route"


def new_session(max_idle_per_host: int = 512) -> Client:
    """The app's one pool of upstream connections (``providers/h1.py``)."""
    return Client(max_idle_per_host)


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


def _retry_after(headers) -> float | None:
    """Seconds from ``retry-after-ms`` (OpenAI, more precise) or ``retry-after`` (seconds or
    an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _missed(code: str, cfg: ProviderConfig, url: str) -> UpstreamTimeout:
    if code == _ROUTE:
        err = UpstreamTimeout(f"upstream gave no answer before the routing deadline: {url}")
        err.route_deadline = True  # the router words it, with the deployment's name
        return err
    if code == _FIRST:
        what = f"sent no first byte within first_token={cfg.first_token_timeout:g}s"
    elif code == _STALLED:
        what = (f"stalled: no data for first_token={cfg.first_token_timeout:g}s "
                "in the middle of the stream")
    else:
        what = f"did not finish within total={cfg.total_timeout:g}s"
    return UpstreamTimeout(f"upstream {what}: {url}")


def _failure(exc: BaseException, url: str, cfg: ProviderConfig) -> GatewayError:
    """The canonical error for what went wrong on the wire."""
    if isinstance(exc, DeadlineExceeded):
        return _missed(exc.args[0], cfg, url)
    if isinstance(exc, ConnectTimeout):
        return UpstreamTimeout(
            f"upstream did not accept a connection within {cfg.connect_timeout:g}s: {url}")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"upstream timed out: {url}")
    reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    return UpstreamError(f"upstream connection failed ({reason}): {url}")


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


async def _raise_for_status(reply: Reply, end_at: float, end_code: str,
                            decode_error: ErrorDecoder) -> None:
    if reply.status < 300:
        return
    data = await reply.read(end_at, end_code)
    err = decode_error(reply.status, data)
    err.retry_after = err.retry_after or _retry_after(reply.headers)
    raise err


async def post_json(
    http: Client,
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
        await _raise_for_status(reply, end_at, end_code, decode_error)
        return await reply.read(end_at, end_code)
    except GatewayError:
        raise
    except _WIRE_ERRORS as exc:
        raise _failure(exc, url, cfg) from exc
    finally:
        if reply is not None:
            reply.release()


async def open_stream(
    http: Client,
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
        await _raise_for_status(reply, min(end_at, first_at), first_code, decode_error)
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

    def __init__(self, reply: Reply, cfg: ProviderConfig, url: str, deadline: float, code: str,
                 end_at: float, loop: asyncio.AbstractEventLoop) -> None:
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
