"""The stream decoder's fast path: text chunks read without parsing the whole chunk.

Most chunks of a stream differ from one another only in the text of ``delta.content`` and,
at OpenAI, in the ``obfuscation`` member that pads every chunk with random characters (on
by default, against length side channels). A ``Template`` is the bytes such a chunk has
around those two: a chunk made of its head, one JSON string literal, its tail and (when
it is padded) letters and digits and ``"}`` means exactly the chunk the template was made
from with another text, so only the literal is parsed. The chunk that finishes the turn
(an empty delta and a ``finish_reason``) has a template too, its slot being the reason.

A template is kept only once it is proven to mean that, in one of two ways:

- ``derive``: from a stream's first chunk when it only opens the turn (OpenAI's
  ``{"role":"assistant","content":"","refusal":null}``), holds no backslash (so every
  quote delimits a string) and names ``"delta"`` once: that one ``"delta":{`` is the first
  choice's, and its object ends at the next ``}`` (its values hold none), so putting
  ``{"content":<text>}`` in its place changes that delta and nothing else;
- ``learn``: from a text chunk, by a probe: the template's fixed bytes hold no backslash,
  and ``head + "\\u0000" + tail`` parses as a chunk whose only text is that NUL, with no
  error, usage, finish, reasoning or tool call. The probe's one backslash is the slot's,
  so the slot is the literal of ``choices[0].delta.content`` and of nothing else.

The padding member at a chunk's very end, ``,"obfuscation":"<letters, digits>"}``, is a
member of the top-level object (its quotes are no string's content: the first follows a
comma, and the last closes the object), which the decoder never reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from modelmart.core.types import TextDelta

# (head, len(head), tail, len(tail), padded): a chunk is head + literal + tail, and when
# padded tail ends in the padding key, followed by letters and digits and PAD_END.
Template = tuple[bytes, int, bytes, int, bool]

# The padding member as OpenAI writes it (compact), and as json.dumps would.
PAD_KEYS = (b',"obfuscation":"', b', "obfuscation": "')
PAD_END = b'"}'
_DELTA = b'"delta":{'
_DELTA_SPACED = b'"delta": {'
_CONTENT = b'"content":'
_FINISH = b'"finish_reason"'
_NO_FINISH = b'"finish_reason":null'
_PROBE = b'"\\u0000"'
# What a first chunk's delta may be for ``derive``: values without a "}" in them.
_OPENING_DELTAS = tuple({"role": "assistant", "content": content, **refusal}
                        for content in ("", None) for refusal in ({}, {"refusal": None}))


@dataclass(slots=True)
class TextRun(TextDelta):
    """Text of block ``index`` from consecutive chunks of one upstream read. ``text`` is all
    of it, so any consumer may take it as the ``TextDelta`` it is; ``literals`` are the JSON
    string literals the upstream wrote, one a chunk (each checked), which this dialect's
    encoder writes back as they are instead of encoding the text again. The decoder makes
    these only for a client of this same dialect (``StreamDecoder(runs=True)``)."""

    literals: list[bytes] = field(default_factory=list)


def literal_in(tpl: Template, data: bytes) -> bytes | None:
    """The literal in ``data``'s slot when ``data`` fits ``tpl`` (not yet checked to be a
    JSON string: the caller parses it), else None."""
    head, hlen, tail, tlen, padded = tpl
    if not data.startswith(head):
        return None
    if padded:
        at = data.rfind(tail)
        if at < hlen or data[-2:] != PAD_END or not data[at + tlen:-2].isalnum():
            return None
    else:
        at = len(data) - tlen
        if at < hlen or not data.endswith(tail):
            return None
    return data[hlen:at]


def derive(data: bytes, chunk: dict) -> tuple[Template | None, Template | None]:
    """The text and finish templates from a stream's first chunk, when it proves them (see
    the module's doc)."""
    choices = chunk.get("choices")
    if (type(choices) is not list or len(choices) != 1 or type(choices[0]) is not dict
            or choices[0].get("delta") not in _OPENING_DELTAS
            or choices[0].get("finish_reason") is not None
            or chunk.get("usage") is not None or chunk.get("error")
            or b"\\" in data or data.count(b'"delta"') != 1):
        return None, None
    at = data.find(_DELTA)
    close = data.find(b"}", at)
    if at < 0 or close < 0:
        return None, None
    head, rest = data[:at], data[close + 1:]
    rest, pad = _split_padding(rest)
    text = _template(head + _DELTA + _CONTENT, b"}" + rest, pad)
    end = rest.find(_NO_FINISH)
    if end < 0 or "finish_reason" not in choices[0] or data.count(_FINISH) != 1:
        return text, None
    return text, _template(head + _DELTA + b"}" + rest[:end + len(_FINISH) + 1],
                           rest[end + len(_NO_FINISH):], pad)


def learn(data: bytes) -> Template | None:
    """The text template from a chunk that brought text, its own bytes around the literal
    of the first ``"content":`` after ``"delta":{``, if the probe proves it."""
    at = data.find(_DELTA)
    if at < 0:
        at = data.find(_DELTA_SPACED)
        if at < 0:
            return None
    start = data.find(_CONTENT, at)
    if start < 0:
        return None
    start += len(_CONTENT)
    if data[start:start + 1] == b" ":
        start += 1
    end = string_end(data, start)
    if end < 0:
        return None
    head, (tail, pad) = data[:start], _split_padding(data[end:])
    if b"\\" in head or b"\\" in tail:
        return None
    probe = head + _PROBE + tail + (pad + b'0"}' if pad else b"")
    try:
        chunk = orjson.loads(probe)
    except orjson.JSONDecodeError:
        return None
    return _template(head, tail, pad) if _only_text(chunk, "\x00") else None


def _split_padding(rest: bytes) -> tuple[bytes, bytes | None]:
    """``rest`` without its padding member, and the padding key (None: not padded)."""
    if rest.endswith(PAD_END):
        for key in PAD_KEYS:
            at = rest.rfind(key)
            if at >= 0 and rest[at + len(key):-2].isalnum():
                return rest[:at], key
    return rest, None


def _template(head: bytes, tail: bytes, pad: bytes | None) -> Template:
    if pad is not None:
        tail += pad
    return (head, len(head), tail, len(tail), pad is not None)


def _only_text(chunk, text: str) -> bool:
    """Whether the plain decoder reads ``chunk`` (after the first) as ``text`` alone."""
    if type(chunk) is not dict or chunk.get("error") or chunk.get("usage") is not None:
        return False
    choices = chunk.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        return False
    choice = choices[0]
    delta = choice.get("delta")
    return (type(delta) is dict and delta.get("content") == text
            and "reasoning_content" not in delta and "reasoning" not in delta
            and not delta.get("tool_calls") and not choice.get("finish_reason"))


def string_end(data: bytes, start: int) -> int:
    """The index just past the JSON string literal opening at ``start``, or -1."""
    if data[start:start + 1] != b'"':
        return -1
    i = start + 1
    while (i := data.find(b'"', i)) >= 0:
        backslashes = 0
        while data[i - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return i + 1
        i += 1
    return -1


_OPENING_KEYS = frozenset(("role", "content", "refusal"))
