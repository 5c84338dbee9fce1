"""Server-sent events framing, shared by every SSE dialect."""

from __future__ import annotations

from typing import Any

import orjson

from modelmart.core.errors import UpstreamError


def sse(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame. ``data`` must not contain newlines (compact JSON never does)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def json_chunk(data: bytes) -> dict[str, Any]:
    """The JSON object in one upstream ``data:`` line (OpenAI and Gemini stream chunks)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"upstream sent a stream chunk that is not JSON: {data[:200]!r}") from None
    if not isinstance(chunk, dict):
        raise UpstreamError("upstream sent a stream chunk that is not a JSON object")
    return chunk


class SSEParser:
    """Incremental SSE parser: feed raw bytes as they arrive, get complete events back.

    Follows the WHATWG rules that matter for LLM APIs: CRLF, CR or LF line ends, ``:``
    comments, multi-line ``data`` joined with newlines, a blank line dispatches.
    """

    __slots__ = ("_buf", "_event", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed_data(self, chunk: bytes) -> list[bytes] | None:
        """The common case in one step: when every event ``chunk`` completes is a single
        unnamed ``data: `` line and no field is pending, their payloads (what ``feed`` would
        pair with ``None``). Otherwise None, with nothing consumed: call ``feed``."""
        if self._data or self._event is not None:
            return None
        buf = self._buf + chunk if self._buf else chunk
        if not buf.startswith(b"data: ") or b"\r" in buf:
            return None
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            return None
        datas = buf[6:cut].split(b"\n\ndata: ")
        # Each "\n\ndata: " starts an event; any other newline (a second line, a comment,
        # a field, a blank line too many) makes the count exceed it: the general case.
        if buf.count(b"\n", 0, cut) != 2 * (len(datas) - 1):
            return None
        self._buf = buf[cut + 2:]
        return datas

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        buf = self._buf + chunk
        if b"\r" in buf:
            # A trailing lone CR may be the first half of CRLF: keep it for the next chunk.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        # Whole events at a time; what follows the last blank line waits for more bytes.
        events = buf.split(b"\n\n")
        self._buf = events.pop()
        out: list[tuple[str | None, bytes]] = []
        for event in events:
            if (event.startswith(b"data: ") and b"\n" not in event and not self._data
                    and self._event is None):
                out.append((None, event[6:]))  # the common case: one data line
            else:
                self._lines(event.split(b"\n"))
                self._dispatch(out)
        return out

    def _lines(self, lines: list[bytes]) -> None:
        for line in lines:
            if not line:
                continue  # a blank line at an event's start (an odd number of newlines)
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")

    def _dispatch(self, out: list) -> None:
        if self._data:
            out.append((self._event, b"\n".join(self._data)))
        self._event = None
        self._data = []

    def close(self) -> list[tuple[str | None, bytes]]:
        """Flush an event left without its closing blank line (a truncated stream)."""
        rest = self.feed(b"\n\n") if (self._buf or self._data) else []
        return rest
