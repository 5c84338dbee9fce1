"""Raw ASGI plumbing: read a bounded body, send JSON, send an SSE stream that stops the
upstream when the client goes away."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine

import orjson

from modelmart.core.errors import InvalidRequest, RequestTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body is {int(declared)} bytes; the limit is {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client disconnected")
        body = message.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes.")
            chunks.append(body)
        if not message.get("more_body", False):
            break
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None


_NAMES: dict[str, bytes] = {}  # header names seen, encoded (a few dozen at most)


def _headers(extra: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    if not extra:
        return []
    out = []
    for k, v in extra.items():
        name = _NAMES.get(k)
        if name is None:
            name = k.encode("latin-1")
            if len(_NAMES) < 1024:
                _NAMES[k] = name
        out.append((name, (v if type(v) is str else str(v)).encode("latin-1")))
    return out


async def send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": JSON_HEADERS + _headers(headers)})
    await send({"type": "http.response.body", "body": data})


async def send_stream(
    send: Send,
    receive: Receive,
    frames: AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
    content_type: bytes = b"text/event-stream; charset=utf-8",
    scope: Scope | None = None,
) -> bool:
    """Send ``frames`` as a streamed body (SSE, or AWS's event stream). A client disconnect
    stops the producer, which closes ``frames`` (and so the upstream request). Returns False
    when the client went away."""
    async def produce() -> None:
        await send(stream_start(headers, content_type))
        async for frame in frames:
            if frame:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return await run_stream(receive, scope, produce(), frames.aclose)  # type: ignore[attr-defined]


def stream_start(headers: dict[str, str] | None = None,
                 content_type: bytes = b"text/event-stream; charset=utf-8") -> dict:
    """The ``http.response.start`` message of a streamed response."""
    return {"type": "http.response.start", "status": 200,
            "headers": [(b"content-type", content_type), *STREAM_HEADERS, *_headers(headers)]}


async def run_stream(receive: Receive, scope: Scope | None, body: Coroutine[Any, Any, None],
                     close: Callable[[], Awaitable[None]] | None = None) -> bool:
    """Run ``body``, a coroutine that sends a whole streamed response itself (from its
    ``http.response.start`` to the message that ends it: one coroutine rather than an
    iterator of frames pumped by another, a layer less on every chunk's way), and cancel
    it if the client goes away. ``close`` (if any) runs after it either way. Returns False
    when the client went away."""
    watch = (scope or {}).get("extensions", {}).get(DISCONNECT_EXTENSION)
    if watch is not None:
        return await _run_watched(body, close, watch["watch"], watch.get("task"))
    return await _run_with_watcher(body, close, receive)


# Offered by modelmart's own server (``modelmart.server``): ``watch(callback)`` calls
# ``callback()`` once if the client goes away, and returns a function that stops watching;
# ``task`` is the task running the app (``asyncio.current_task()`` costs a system call on
# Python 3.11). With it a stream needs no second task listening for ``http.disconnect``.
DISCONNECT_EXTENSION = "modelmart.disconnect"


async def _run_watched(body: Awaitable[None], close, watch, task: asyncio.Task | None) -> bool:
    task = task or asyncio.current_task()
    gone = False

    def on_disconnect() -> None:
        nonlocal gone
        gone = True
        task.cancel()

    unwatch = watch(on_disconnect)
    try:
        await body
        return True
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        return False
    finally:
        unwatch()
        if close is not None:
            await close()


async def _run_with_watcher(body: Awaitable[None], close, receive: Receive) -> bool:
    """Any ASGI server: a second task waits for ``http.disconnect``."""
    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    producer = asyncio.ensure_future(body)
    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (producer, watcher):
            if not task.done():
                task.cancel()
        await asyncio.gather(producer, watcher, return_exceptions=True)
        if close is not None:
            await close()
    if producer in done and producer.exception() is None:
        return True
    if producer in done and producer.exception() is not None:
        raise producer.exception()  # type: ignore[misc]
    return False
