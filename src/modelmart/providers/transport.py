"""The transport seam: how ``providers/http.py`` sends one request to an upstream.

One method does it, as ``AsyncBaseTransport.handle_async_request`` does in httpx:
``request(method, url, headers, body, *, connect_timeout, deadline, why)`` returns a reply
whose status and headers are known, and whose body is read with ``read()`` (whole) or
``next_chunk()`` (as it arrives). ``h1.Client`` is the default (pooled keep-alive
connections, proxies, TLS, bounds on what upstreams send); ``MockTransport`` answers in
process from a function, for tests.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, Awaitable, Callable, Iterable, Protocol, Union

from .h1 import DeadlineExceeded, HeaderBlock


class UpstreamReply(Protocol):
    status: int
    headers: dict[str, str]  # lowercase names; repeated headers joined with ", "

    async def read(self, deadline: float | None = None, why: str = "") -> bytes: ...

    async def next_chunk(self, deadline: float | None = None, why: str = "") -> bytes: ...

    def release(self) -> None: ...  # done with it: the connection may be reused

    def close(self) -> None: ...  # give up on it: the upstream sees the hang-up


class Transport(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    async def request(self, method: str, url: str, headers: dict[str, str] | HeaderBlock,
                      body: bytes, *, connect_timeout: float, deadline: float | None = None,
                      why: str = "") -> UpstreamReply:
        """Send the request; return once the reply's head has arrived (by loop time
        ``deadline``, else ``DeadlineExceeded(why)``). Never sends it twice."""
        ...

    def for_config(self, cfg: Any) -> "Transport":
        """The transport for one deployment (its own TLS trust, proxy, limits)."""
        ...

    async def close(self) -> None: ...


# ---- an in-process transport for tests --------------------------------------------------


@dataclass
class MockRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


Chunks = Union[bytes, Iterable[bytes], AsyncIterable[bytes]]


@dataclass
class MockResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # The body: bytes, or chunks (a list, or an async iterator: delays and stalls).
    body: Chunks = b""


Handler = Callable[[MockRequest], Union[MockResponse, Awaitable[MockResponse]]]


class MockTransport:
    """Answers every request with ``handler(MockRequest)`` (plain or async), which returns a
    ``MockResponse``. ``requests`` keeps what was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[MockRequest] = []
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def for_config(self, cfg: Any) -> "MockTransport":
        return self

    async def request(self, method: str, url: str, headers: dict[str, str] | HeaderBlock,
                      body: bytes, *, connect_timeout: float, deadline: float | None = None,
                      why: str = "") -> "_MockReply":
        if isinstance(headers, HeaderBlock):
            lines = headers.raw.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines if line)
        request = MockRequest(method, url, dict(headers), body)
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await _until(answer, deadline, why)
        return _MockReply(answer)

    async def close(self) -> None:
        self.closed = True


async def _until(awaitable: Awaitable, deadline: float | None, why: str) -> Any:
    if deadline is None:
        return await awaitable
    try:
        async with asyncio.timeout_at(deadline):
            return await awaitable
    except TimeoutError:
        raise DeadlineExceeded(why) from None


class _MockReply:
    def __init__(self, answer: MockResponse) -> None:
        self.status = answer.status
        self.headers = {k.lower(): v for k, v in answer.headers.items()}
        body = answer.body
        if isinstance(body, (bytes, bytearray)):
            body = [bytes(body)]
        self._sync = iter(body) if not hasattr(body, "__anext__") else None
        self._async = body if self._sync is None else None

    async def next_chunk(self, deadline: float | None = None, why: str = "") -> bytes:
        if self._sync is not None:
            return next((chunk for chunk in self._sync if chunk), b"")
        if self._async is None:
            return b""
        try:
            return await _until(self._async.__anext__(), deadline, why)
        except StopAsyncIteration:
            return b""

    async def read(self, deadline: float | None = None, why: str = "") -> bytes:
        parts = []
        while chunk := await self.next_chunk(deadline, why):
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        pass

    def close(self) -> None:
        self._sync, self._async = iter(()), None
