"""A hostile upstream: a raw asyncio HTTP/1.1 server that speaks just enough of OpenAI's
``POST /v1/chat/completions`` and Anthropic's ``POST /v1/messages`` (their documented JSON
replies, SSE streams and error bodies) to be configured as either, and misbehaves as the
request's ``model`` says. Each misbehaviour is a name, with an optional argument after a
colon, so concurrent requests can ask for different ones:

    ok                  a normal reply (streamed if asked), after ``arg`` seconds
    head_bytes:N        one header ``x-pad`` of N bytes, sent in pieces
    header_lines:N      N copies of the header ``x-dup: v``
    body:N              a 200 JSON reply whose body is N bytes
    endless             a 200 reply read to the close, that never closes
    gzip:N              a 200 reply of a few hundred KB gzip that inflates to N bytes
    sse_line:N          a 200 event stream whose first ``data:`` line is N bytes long
    status:CODE         that status, with a small body and a content-length
    retry:VALUE         429 with ``retry-after: VALUE`` (``retry-ms:VALUE``: retry-after-ms)
    echo:CODE           CODE with the request's headers, all of them, in the error message

It never imports modelmart. Runs on its own loop in a thread, like the other fakes; with
``tls`` (a server ``ssl.SSLContext``) it speaks https.
"""

from __future__ import annotations

import asyncio
import json
import threading
import zlib

from .script import free_port

_PIECE = 64 * 1024
_REASON = {200: "OK", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
           429: "Too Many Requests", 500: "Internal Server Error"}


class HostileUpstream:
    def __init__(self, tls=None) -> None:
        self.tls = tls
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.requests: list[tuple[str, dict[str, str], dict]] = []
        self._bombs: dict[int, bytes] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> "HostileUpstream":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls))
        self._ready.set()
        self.loop.run_forever()

    # ---- the connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = json.loads(await reader.readexactly(int(headers["content-length"])))
                self.requests.append((path, headers, body))
                if not await self._answer(writer, path, headers, body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer, path: str, headers: dict, body: dict) -> bool:
        """Answer one request; False when the connection is to be closed."""
        anthropic = path.endswith("/messages")
        name, _, arg = str(body.get("model", "ok")).partition(":")
        if name == "ok":
            await asyncio.sleep(float(arg or 0))
            if body.get("stream"):
                frames = _anthropic_frames() if anthropic else _openai_frames()
                await _send(writer, 200, {"content-type": "text/event-stream"}, frames)
            else:
                await _send(writer, 200, {"content-type": "application/json"},
                            json.dumps(_anthropic_message() if anthropic
                                       else _openai_completion()).encode())
            return True
        if name == "head_bytes":
            writer.write(b"HTTP/1.1 200 OK\r\nx-pad: ")
            await _pour(writer, int(arg), b"a")
            await _send_rest(writer, b"\r\ncontent-length: 2\r\n\r\n{}")
        elif name == "header_lines":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            await _pour(writer, int(arg) * 10, b"x-dup: v\r\n")
            await _send_rest(writer, b"content-length: 2\r\n\r\n{}")
        elif name == "body":
            writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n'
                         b'content-length: %d\r\n\r\n{"id": "' % int(arg))
            await _pour(writer, int(arg) - 9, b"x")
            await _send_rest(writer, b'"}')
        elif name == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"connection: close\r\n\r\n")
            await _pour(writer, 1 << 62, b"x")
        elif name == "gzip":
            await _send(writer, 200, {"content-type": "application/json",
                                      "content-encoding": "gzip"}, self.bomb(int(arg)))
        elif name == "sse_line":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"connection: close\r\n\r\ndata: ")
            await _pour(writer, int(arg), b"x")
            await _send_rest(writer, b"\n\n")
        elif name == "status":
            await _send(writer, int(arg), {"content-type": "application/json"}, b"{}")
        elif name in ("retry", "retry-ms"):
            header = "retry-after" if name == "retry" else "retry-after-ms"
            await _send(writer, 429, {"content-type": "application/json", header: arg},
                        _error(anthropic, 429, "slow down"))
        elif name == "echo":
            echoed = "you sent: " + json.dumps(headers)
            await _send(writer, int(arg), {"content-type": "application/json"},
                        _error(anthropic, int(arg), echoed))
        else:
            await _send(writer, 400, {"content-type": "application/json"},
                        _error(anthropic, 400, f"unknown behaviour {name!r}"))
        return name in ("status", "retry", "retry-ms", "echo")

    def bomb(self, size: int) -> bytes:
        """A gzip body that inflates to ``size`` zero bytes (made once: seconds of CPU for
        hundreds of MB; call it before a timed test)."""
        if size not in self._bombs:
            squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            block = bytes(1 << 20)
            parts = [squeeze.compress(block) for _ in range(size >> 20)]
            self._bombs[size] = b"".join(parts) + squeeze.flush()
        return self._bombs[size]


async def _pour(writer, size: int, pattern: bytes) -> None:
    """``size`` bytes of ``pattern`` repeated, a piece at a time, as fast as the reader
    takes them (and no longer than it reads at all)."""
    piece = pattern * (_PIECE // len(pattern))
    sent = 0
    while sent < size:
        part = piece if size - sent >= len(piece) else piece[: size - sent]
        writer.write(part)
        await writer.drain()
        sent += len(part)


async def _send_rest(writer, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _send(writer, status: int, headers: dict, body) -> None:
    reason = _REASON.get(status, "Whatever")
    if isinstance(body, list):  # an event stream: chunked, frame by frame
        head = [f"HTTP/1.1 {status} {reason}", "transfer-encoding: chunked",
                *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for frame in body:
            writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    else:
        head = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(body)}",
                *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


# ---- the providers' documented shapes ---------------------------------------------------


def _error(anthropic: bool, status: int, message: str) -> bytes:
    if anthropic:
        kind = "rate_limit_error" if status == 429 else (
            "api_error" if status >= 500 else "invalid_request_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind = "requests" if status == 429 else (
        "server_error" if status >= 500 else "invalid_request_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": None}}).encode()


def _openai_completion() -> dict:
    return {"id": "chatcmpl-hostile1", "object": "chat.completion", "created": 1764126000,
            "model": "ok", "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                        "message": {"role": "assistant", "content": "fine"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def _openai_frames() -> list[bytes]:
    base = {"id": "chatcmpl-hostile1", "object": "chat.completion.chunk",
            "created": 1764126000, "model": "ok"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                          "content": "fine"},
                                    "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    return [b"data: %s\n\n" % json.dumps(c).encode() for c in chunks] + [b"data: [DONE]\n\n"]


def _anthropic_message() -> dict:
    return {"id": "msg_hostile1", "type": "message", "role": "assistant", "model": "ok",
            "content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}


def _anthropic_frames() -> list[bytes]:
    message = {**_anthropic_message(), "content": [], "stop_reason": None}
    events = [("message_start", {"type": "message_start", "message": message}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "fine"}}),
              ("content_block_stop", {"type": "content_block_stop", "index": 0}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                    "stop_sequence": None},
                                 "usage": {"output_tokens": 1}}),
              ("message_stop", {"type": "message_stop"})]
    return [b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data).encode())
            for name, data in events]
