"""AWS event-stream framing (``application/vnd.amazon.eventstream``), shared by every AWS
streaming dialect, as ``sse`` is for the SSE ones.

A message on the wire::

    prelude:  total length (u32) | headers length (u32) | CRC32 of those 8 bytes (u32)
    headers:  name length (u8) | name | value type (u8) | value ...
    payload:  bytes
    trailer:  CRC32 of everything before it (u32)

All integers are big-endian. The message CRC continues from the prelude CRC, which is the
same as a CRC over prelude and body, so a corrupt prelude is caught before we trust its
lengths.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from modelmart.core.errors import UpstreamError

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_PRELUDE = struct.Struct(">III")
_PRELUDE_LEN = 12
_MIN_MESSAGE = _PRELUDE_LEN + 4
# botocore's limits: anything bigger is a corrupt length field, not a real message, and must
# not make us buffer megabytes waiting for bytes that will never come.
MAX_HEADERS = 128 * 1024
MAX_PAYLOAD = 24 * 1024 * 1024

# Header value types of the format.
_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)
_FIXED = {_BYTE: ">b", _SHORT: ">h", _INT: ">i", _LONG: ">q", _TIMESTAMP: ">q"}


class EventStreamError(UpstreamError):
    """A frame that is not valid event-stream (bad CRC, impossible lengths, cut short)."""


class MessageTooLarge(EventStreamError):
    """A message whose declared payload is over the decoder's bound (refused from its
    prelude, before its bytes are waited for)."""

    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"event stream message payload too large ({total} bytes; the bound "
                         f"is {limit})")
        self.limit = limit


@dataclass(slots=True)
class Message:
    headers: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def name(self) -> str:
        """The event's type, or for an exception message the exception's type, or for an
        error message its error code: the member of the stream union it stands for."""
        kind = self.message_type
        if kind == "exception":
            return str(self.headers.get(":exception-type", ""))
        if kind == "error":
            return str(self.headers.get(":error-code", ""))
        return str(self.headers.get(":event-type", ""))


# ---- encoding ---------------------------------------------------------------------------


def encode_message(headers: dict[str, Any], payload: bytes) -> bytes:
    """One framed message. Header values: str (string), bytes (byte array), bool, int
    (32-bit integer) or uuid.UUID."""
    head = b"".join(_encode_header(name, value) for name, value in headers.items())
    total = _PRELUDE_LEN + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event_message(event_type: str, payload: bytes,
                  content_type: str = "application/json") -> bytes:
    return encode_message({":event-type": event_type, ":content-type": content_type,
                           ":message-type": "event"}, payload)


def exception_message(exception_type: str, payload: bytes,
                      content_type: str = "application/json") -> bytes:
    return encode_message({":exception-type": exception_type, ":content-type": content_type,
                           ":message-type": "exception"}, payload)


def _encode_header(name: str, value: Any) -> bytes:
    raw_name = name.encode()
    if len(raw_name) > 255:
        raise ValueError(f"event-stream header name too long: {name[:40]}...")
    out = struct.pack(">B", len(raw_name)) + raw_name
    if isinstance(value, bool):  # before int: bool is an int subclass
        return out + struct.pack(">B", _TRUE if value else _FALSE)
    if isinstance(value, int):
        return out + struct.pack(">Bi", _INT, value)
    if isinstance(value, uuid.UUID):
        return out + struct.pack(">B", _UUID) + value.bytes
    kind, data = (_STRING, value.encode()) if isinstance(value, str) else (_BYTES, bytes(value))
    return out + struct.pack(">BH", kind, len(data)) + data


# ---- decoding ---------------------------------------------------------------------------


class EventStreamDecoder:
    """Incremental decoder: feed raw bytes as they arrive, get complete messages back. A
    message whose prelude declares a payload over ``max_payload`` bytes is refused at once."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload

    def feed(self, chunk: bytes) -> list[Message]:
        self._buf += chunk
        out: list[Message] = []
        while len(self._buf) >= _PRELUDE_LEN:
            total = _check_prelude(self._buf, self._max)
            if len(self._buf) < total:
                break
            out.append(_decode_message(bytes(self._buf[:total])))
            del self._buf[:total]
        return out

    def close(self) -> None:
        """Raise if the stream ended in the middle of a message."""
        if self._buf:
            size = len(self._buf)
            self._buf.clear()
            raise EventStreamError(f"event stream ended inside a message ({size} bytes left)")


def _check_prelude(buf: bytearray, max_payload: int = MAX_PAYLOAD) -> int:
    total, head_len, crc = _PRELUDE.unpack_from(buf, 0)
    if zlib.crc32(bytes(buf[:8])) != crc:
        raise EventStreamError("event stream prelude checksum mismatch")
    if head_len > MAX_HEADERS or total < _MIN_MESSAGE + head_len:
        raise EventStreamError(f"event stream message has impossible lengths "
                               f"(total {total}, headers {head_len})")
    if total - _MIN_MESSAGE - head_len > max_payload:
        raise MessageTooLarge(total, max_payload)
    return total


def _decode_message(data: bytes) -> Message:
    (crc,) = struct.unpack_from(">I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise EventStreamError("event stream message checksum mismatch")
    head_len = struct.unpack_from(">I", data, 4)[0]
    headers = _decode_headers(data[_PRELUDE_LEN:_PRELUDE_LEN + head_len])
    return Message(headers, data[_PRELUDE_LEN + head_len:-4])


def _decode_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    pos = 0
    try:
        while pos < len(data):
            size = data[pos]
            name = data[pos + 1:pos + 1 + size].decode()
            pos += 1 + size
            value, pos = _decode_value(data, pos)
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, KeyError):
        raise EventStreamError("event stream message has malformed headers") from None
    return headers


def _decode_value(data: bytes, pos: int) -> tuple[Any, int]:
    kind = data[pos]
    pos += 1
    if kind in (_TRUE, _FALSE):
        return kind == _TRUE, pos
    if kind in _FIXED:
        fmt = _FIXED[kind]
        return struct.unpack_from(fmt, data, pos)[0], pos + struct.calcsize(fmt)
    if kind == _UUID:
        if pos + 16 > len(data):
            raise IndexError
        return uuid.UUID(bytes=data[pos:pos + 16]), pos + 16
    if kind in (_BYTES, _STRING):
        (size,) = struct.unpack_from(">H", data, pos)
        raw = data[pos + 2:pos + 2 + size]
        if len(raw) != size:
            raise IndexError
        return (raw.decode() if kind == _STRING else raw), pos + 2 + size
    raise KeyError(kind)
