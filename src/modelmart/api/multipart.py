"""``multipart/form-data`` (RFC 7578), as the OpenAI SDK uploads files: the parts of a body
already read, each a name, an optional filename and its bytes. Linear in the body's size
(``bytes.find``), no copies of the parts beyond the one each value needs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelmart.core.errors import InvalidRequest

_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^;\s]{1,200}))', re.IGNORECASE)
_PARAM = re.compile(r';\s*([A-Za-z*]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')
MAX_PARTS = 64
MAX_PART_HEAD = 8192


@dataclass(slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def boundary_of(content_type: str) -> bytes:
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest("Expected a multipart/form-data body (a file upload).")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise InvalidRequest("The multipart/form-data content type has no boundary.")
    return (match.group(1) or match.group(2)).encode("latin-1")


def parse(body: bytes, content_type: str) -> dict[str, Part]:
    """The parts by name (the last one wins, like most frameworks); a 400 if malformed."""
    delimiter = b"--" + boundary_of(content_type)
    start = body.find(delimiter)
    if start < 0:
        raise InvalidRequest("The multipart body does not contain its boundary.")
    parts: dict[str, Part] = {}
    pos = start + len(delimiter)
    for _ in range(MAX_PARTS + 1):
        if body.startswith(b"--", pos):
            return parts  # the closing delimiter
        if not body.startswith(b"\r\n", pos):
            raise InvalidRequest("Malformed multipart body: a boundary is not followed by a "
                                 "line break.")
        head_end = body.find(b"\r\n\r\n", pos + 2, pos + 2 + MAX_PART_HEAD)
        if head_end < 0:
            raise InvalidRequest("Malformed multipart body: a part's headers do not end.")
        end = body.find(b"\r\n" + delimiter, head_end + 4)
        if end < 0:
            raise InvalidRequest("Malformed multipart body: the last part is not closed.")
        part = _part(body[pos + 2:head_end], body[head_end + 4:end])
        parts[part.name] = part
        pos = end + 2 + len(delimiter)
    raise InvalidRequest(f"Too many parts in the multipart body (at most {MAX_PARTS}).")


def _part(head: bytes, data: bytes) -> Part:
    name = filename = content_type = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-disposition":
            params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                      for m in _PARAM.finditer(value)}
            name, filename = params.get("name"), params.get("filename")
            if filename is not None:
                filename = filename.replace('\\"', '"')
        elif key == "content-type":
            content_type = value.strip()
    if not name:
        raise InvalidRequest("Malformed multipart body: a part has no name.")
    return Part(name, filename, content_type, data)
