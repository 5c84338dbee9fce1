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


# The largest SSE event a parser holds by default (a stream's ``limits.event_mb``).
MAX_EVENT = 24 << 20


class EventTooLarge(UpstreamError):
    """An SSE event, or the part of one received so far, over the parser's bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upstream sent an SSE event over {limit} bytes")
        self.limit = limit


def _has_blank_line(data: bytes) -> bool:
    """Whether ``data`` holds two line ends in a row (CR, LF or CRLF each): in raw bytes that
    is always one of these three pairs."""
    return b"\n\n" in data or b"\r\r" in data or b"\n\r" in data


class SSEParser:
    """Incremental SSE parser: feed raw bytes as they arrive, get complete events back.

    Follows the WHATWG rules that matter for LLM APIs: CRLF, CR or LF line ends, ``:``
    comments, multi-line ``data`` joined with newlines, a blank line dispatches.

    Linear in what it is fed, however the bytes are split: the start of an unfinished event
    is kept as pieces, and only the new bytes are searched for the blank line that ends it.
    An event over ``max_event`` bytes raises ``EventTooLarge`` (an ``UpstreamError``).
    """

    __slots__ = ("_pending", "_pending_len", "_event", "_data", "_max")

    def __init__(self, max_event: int = MAX_EVENT) -> None:
        self._pending: list[bytes] = []  # an unfinished event's bytes, as they came
        self._pending_len = 0
        self._event: str | None = None
        self._data: list[bytes] = []
        self._max = max_event

    def feed_data(self, chunk: bytes) -> list[bytes] | None:
        """The common case in one step: when every event ``chunk`` completes is a single
        unnamed ``data: `` line, their payloads (what ``feed`` would pair with ``None``).
        Otherwise None, with nothing consumed: call ``feed``."""
        pending = self._pending
        cut = chunk.rfind(b"\n\n")
        if cut < 0:
            return None
        if pending:
            buf = b"".join([*pending, chunk])
            cut += self._pending_len
        else:
            buf = chunk
        size = len(buf)
        if size > self._max or not buf.startswith(b"data: ") or b"\r" in buf:
            return None
        datas = buf[6:cut].split(b"\n\ndata: ")
        # Each "\n\ndata: " starts an event; any other newline (a second line, a comment,
        # a field, a blank line too many) makes the count exceed it: the general case.
        if buf.count(b"\n", 0, cut) != 2 * (len(datas) - 1):
            return None
        cut += 2
        if cut < size:  # the start of the next event
            self._pending, self._pending_len = [buf[cut:]], size - cut
        elif pending:
            self._pending, self._pending_len = [], 0
        return datas

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        pending = self._pending
        if pending:
            if not (_has_blank_line(chunk) or _has_blank_line(pending[-1][-1:] + chunk[:1])):
                self._hold(chunk)  # the event goes on: nothing to parse yet
                return []
            buf = b"".join([*pending, chunk])
            self._pending, self._pending_len = [], 0
        else:
            buf = chunk
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
        rest = events.pop()
        if len(buf) > self._max and any(len(event) > self._max for event in events):
            raise EventTooLarge(self._max)
        if rest:
            self._hold(rest)
        out: list[tuple[str | None, bytes]] = []
        for event in events:
            if (event.startswith(b"data: ") and b"\n" not in event and not self._data
                    and self._event is None):
                out.append((None, event[6:]))  # the common case: one data line
            else:
                self._lines(event.split(b"\n"))
                self._dispatch(out)
        return out

    def _hold(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_len += len(data)
        if self._pending_len > self._max:
            self._pending, self._pending_len = [], 0
            raise EventTooLarge(self._max)

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
        return self.feed(b"\n\n") if self._pending else []
