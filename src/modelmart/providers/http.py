"""Upstream HTTP: one pooled aiohttp session per app, errors mapped to ``core.errors``."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import aiohttp

from modelmart.core.errors import GatewayError, UpstreamError, UpstreamTimeout

from .base import ProviderConfig

# Turns an upstream error reply (status, body) into the canonical error.
ErrorDecoder = Callable[[int, bytes], GatewayError]


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
    return aiohttp.ClientTimeout(
        total=cfg.total_timeout, sock_connect=cfg.connect_timeout, sock_read=cfg.first_token_timeout
    )


def _retry_after(headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _connection_error(exc: BaseException, url: str) -> GatewayError:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return UpstreamTimeout(f"upstream timed out: {url}")
    return UpstreamError(f"upstream connection failed ({type(exc).__name__}): {url}")


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    cfg: ProviderConfig,
    decode_error: ErrorDecoder,
) -> bytes:
    """POST and return the body of a 2xx reply; anything else raises a ``GatewayError``."""
    try:
        async with session.post(url, data=body, headers=headers, timeout=_timeout(cfg)) as resp:
            data = await resp.read()
            if resp.status >= 300:
                err = decode_error(resp.status, data)
                err.retry_after = err.retry_after or _retry_after(resp.headers)
                raise err
            return data
    except GatewayError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _connection_error(exc, url) from exc


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
    try:
        resp = await session.post(url, data=body, headers=headers, timeout=_timeout(cfg))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _connection_error(exc, url) from exc
    try:
        if resp.status >= 300:
            try:
                data = await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise _connection_error(exc, url) from exc
            err = decode_error(resp.status, data)
            err.retry_after = err.retry_after or _retry_after(resp.headers)
            raise err
        yield _chunks(resp, url)
    finally:
        resp.close()


async def _chunks(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _connection_error(exc, url) from exc
