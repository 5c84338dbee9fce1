"""Bytes on the wire: status lines, the server's own short replies, which response headers
an app may send, and request targets made safe for a log line."""

from __future__ import annotations

import re
from http import HTTPStatus

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))


STATUS_LINES = {s: status_line(s) for s in REASONS}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def plain(status: int, message: bytes) -> bytes:
    """A short text/plain reply of the server's own; the connection ends after it."""
    return (STATUS_LINES.get(status) or status_line(status)) + (
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (len(message), message))


PLAIN_500 = plain(500, b"Internal Server Error")
BUSY = plain(503, b"Service Unavailable")


class InvalidResponse(RuntimeError):
    """The app sent what can't go on the wire (a bad header, a body longer than its
    content-length, a message out of order): an app error, answered with a 500 if nothing
    was sent yet."""


# What a response header is to the server. Framing headers are the server's to write: it
# takes the app's values into account and writes its own.
ORDINARY, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION = 0, 1, 2, 3
_FRAMING = {b"content-length": CONTENT_LENGTH, b"transfer-encoding": TRANSFER_ENCODING,
            b"connection": CONNECTION}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_KNOWN_NAMES = 4096  # names remembered per server, at most (an app uses a few dozen)


def header_kind(name: object, known: dict[bytes, int]) -> int:
    """The kind of a response header name not seen before, remembered in ``known``; raises
    InvalidResponse for a name that is not an HTTP token (RFC 9110 5.1)."""
    if type(name) is not bytes or _TOKEN.fullmatch(name) is None:
        raise InvalidResponse(f"invalid response header name {name!r}")
    kind = _FRAMING.get(name.lower(), ORDINARY)
    if len(known) < _KNOWN_NAMES:
        known[name] = kind
    return kind


def content_length(value: bytes, previous: int | None) -> int:
    try:
        length = int(value)
    except (TypeError, ValueError):
        length = -1
    if length < 0 or (previous is not None and previous != length):
        raise InvalidResponse(f"invalid content-length {value!r} in the response")
    return length


_UNPRINTABLE = re.compile(rb'[^\x21-\x7e]|["\\]')


def _hex(match: re.Match) -> bytes:
    return b"\\x%02x" % match.group()[0]


def printable(raw: bytes) -> str:
    """``raw`` (a request target) for a log line: as received, percent escapes included,
    with bytes outside printable ASCII, quotes and backslashes as ``\\xNN``, so no request
    can end a log line or forge one."""
    return _UNPRINTABLE.sub(_hex, raw).decode("ascii")
