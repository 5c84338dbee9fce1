"""Upstream HTTP: one pooled aiohttp session per app, errors mapped to ``core.errors``.

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
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

import aiohttp

from modelmart.core.errors import GatewayError, UpstreamError, UpstreamTimeout

from .base import ProviderConfig

# Turns an upstream error reply (status, body) into the canonical error.
ErrorDecoder = Callable[[int, bytes], GatewayError]

_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def new_session(limit: int = 1000) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
    )


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


def _timeout(cfg: ProviderConfig) -> aiohttp.ClientTimeout:
    # Only the connect phase is left to aiohttp; the first-byte and total deadlines are ours
    # (``_Deadlines``) because aiohttp's read timeout restarts on every chunk.
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=cfg.connect_timeout,
                                 sock_read=None)


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


def _connection_error(exc: BaseException, url: str, cfg: ProviderConfig) -> GatewayError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(
            f"upstream did not accept a connection within {cfg.connect_timeout:g}s: {url}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return UpstreamTimeout(f"upstream timed out: {url}")
    return UpstreamError(f"upstream connection failed ({type(exc).__name__}): {url}")


class _Deadlines:
    """The first-byte and total deadlines of one upstream call, on the loop's clock."""

    def __init__(self, cfg: ProviderConfig, url: str) -> None:
        now = asyncio.get_running_loop().time()
        self.cfg, self.url = cfg, url
        self.first_byte_at = now + cfg.first_token_timeout
        self.end_at = now + cfg.total_timeout

    def first_byte(self):
        if self.first_byte_at < self.end_at:
            return _bounded(self.first_byte_at, self._message(
                f"sent no first byte within first_token={self.cfg.first_token_timeout:g}s"))
        return self.total()

    def next_chunk(self):
        """A later stream chunk: within the total, and no longer than first_token after the
        previous one (a silent stream is as stalled as a silent start)."""
        loop = asyncio.get_running_loop()
        idle_at = loop.time() + self.cfg.first_token_timeout
        if idle_at < self.end_at:
            return _bounded(idle_at, self._message(
                f"stalled: no data for first_token={self.cfg.first_token_timeout:g}s "
                "in the middle of the stream"))
        return self.total()

    def total(self):
        return _bounded(self.end_at, self._message(
            f"did not finish within total={self.cfg.total_timeout:g}s"))

    def _message(self, what: str) -> str:
        return f"upstream {what}: {self.url}"


@asynccontextmanager
async def _bounded(when: float, message: str):
    """Raise ``UpstreamTimeout(message)`` if the block is still running at loop time
    ``when``. Timeouts raised by aiohttp itself (connect) pass through unchanged."""
    try:
        async with asyncio.timeout_at(when) as scope:
            yield
    except TimeoutError:
        if scope.expired():
            raise UpstreamTimeout(message) from None
        raise


async def _raise_for_status(resp: aiohttp.ClientResponse, decode_error: ErrorDecoder) -> None:
    if resp.status < 300:
        return
    data = await resp.read()
    err = decode_error(resp.status, data)
    err.retry_after = err.retry_after or _retry_after(resp.headers)
    raise err


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    cfg: ProviderConfig,
    decode_error: ErrorDecoder,
) -> bytes:
    """POST and return the body of a 2xx reply; anything else raises a ``GatewayError``."""
    deadlines = _Deadlines(cfg, url)
    try:
        async with deadlines.first_byte():
            resp = await session.post(url, data=body, headers=headers, timeout=_timeout(cfg))
        try:
            async with deadlines.total():
                await _raise_for_status(resp, decode_error)
                return await resp.read()
        finally:
            resp.release()
    except GatewayError:
        raise
    except _NETWORK_ERRORS as exc:
        raise _connection_error(exc, url, cfg) from exc


@asynccontextmanager
async def post_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    cfg: ProviderConfig,
    decode_error: ErrorDecoder,
) -> AsyncIterator[AsyncIterator[bytes]]:
    """POST and yield an iterator over the reply's raw body chunks (a 2xx reply only).
    Leaving the context closes the upstream connection, which cancels the generation."""
    deadlines = _Deadlines(cfg, url)
    try:
        async with deadlines.first_byte():
            resp = await session.post(url, data=body, headers=headers, timeout=_timeout(cfg))
    except GatewayError:
        raise
    except _NETWORK_ERRORS as exc:
        raise _connection_error(exc, url, cfg) from exc
    try:
        try:
            async with deadlines.total():
                await _raise_for_status(resp, decode_error)
        except GatewayError:
            raise
        except _NETWORK_ERRORS as exc:
            raise _connection_error(exc, url, cfg) from exc
        yield _chunks(resp, deadlines)
    finally:
        resp.close()


async def _chunks(resp: aiohttp.ClientResponse, deadlines: _Deadlines) -> AsyncIterator[bytes]:
    limit = deadlines.first_byte
    try:
        while True:
            async with limit():
                chunk = await resp.content.readany()
            if not chunk:
                return
            limit = deadlines.next_chunk
            yield chunk
    except GatewayError:
        raise
    except _NETWORK_ERRORS as exc:
        raise _connection_error(exc, deadlines.url, deadlines.cfg) from exc
