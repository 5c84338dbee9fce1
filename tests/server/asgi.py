"""Small ASGI apps for the server's tests: a fixed response (``Response``) and ``app``, whose
behaviour each request picks by path. Plain ASGI 3; nothing of modelmart."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs


class Response:
    """An ASGI app that answers every request with one fixed response (after reading the
    request body), like a framework's response object."""

    def __init__(self, content: bytes | str = b"", status_code: int = 200,
                 headers: dict[str, str] | None = None, media_type: str | None = None) -> None:
        self.body = content.encode() if isinstance(content, str) else content
        self.status_code = status_code
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        names = {k for k, _ in raw}
        if media_type is not None and b"content-type" not in names:
            raw.append((b"content-type", media_type.encode()))
        if b"content-length" not in names and b"transfer-encoding" not in names \
                and status_code not in (204, 304):
            raw.append((b"content-length", str(len(self.body)).encode()))
        self.headers = raw

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _text(send, status: int, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send) -> None:
    """``/health``: ok. ``/echo``: reads the body, answers its length. ``/headers``: reads
    the body, answers the request headers as JSON. ``/auth``: 401 from the headers alone,
    body unread. ``/stream?parts=N&delay=S``: a streamed reply. ``/sleep?s=S``: answers
    after S seconds. ``/bad-header?kind=...``: a response header that can't go on the
    wire. ``/lifespan``: what the lifespan state holds."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/health":
        await _text(send, 200, b"ok")
    elif path == "/echo":
        body = await read_body(receive)
        await _text(send, 200, b"%d" % len(body))
    elif path == "/headers":
        await read_body(receive)
        seen = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(seen).encode()})
    elif path == "/auth":
        await _text(send, 401, b"no key", [(b"www-authenticate", b"Bearer")])
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(query.get("parts", 3))):
            await asyncio.sleep(float(query.get("delay", 0)))
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/sleep":
        await asyncio.sleep(float(query.get("s", 1)))
        await _text(send, 200, b"slept")
    elif path == "/bad-header":
        bad = {"crlf": (b"x-a", b"v\r\nset-cookie: smuggled=1"), "lf": (b"x-a", b"v\nx-b: 1"),
               "nul": (b"x-a", b"v\0w"), "name-space": (b"x a", b"v"),
               "name-colon": (b"x-a:", b"v"), "name-empty": (b"", b"v")}[query["kind"]]
        await _text(send, 200, b"should not be sent", [bad])
    elif path == "/lifespan":
        await _text(send, 200, json.dumps(scope.get("state", {})).encode())
    else:
        await _text(send, 404, b"not found")
