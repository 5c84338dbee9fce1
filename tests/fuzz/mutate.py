"""Structure-aware mutation of JSON request bodies, as Hypothesis strategies.

A body starts as a valid request of its surface (``seeds.py``) and is changed in a few
places: a value replaced by one of another type, by a nasty value (numbers past 64 bits,
NaN-like literals, control characters, deep nesting) or by a word of some dialect; a field
dropped, renamed, duplicated (the same key twice in one object) or moved elsewhere in the
tree. Most bodies stay nearly valid, so they get past the first checks and reach the deeper
ones (tool schemas, tool calls, upstream encoders); a few are not even JSON.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """A fragment of JSON text put into the body as it is (``NaN``, ``1e999``, 1,000 ``[``)."""

    text: str


@dataclass(frozen=True)
class Dup:
    """An object written with its members in this order, a key possibly twice."""

    pairs: tuple[tuple[str, Any], ...]


def dumps(value: Any, ascii_only: bool = True) -> bytes:
    """JSON text for a body of plain values, ``Raw`` and ``Dup`` (a lone surrogate in a
    string is written as an escape, or as itself when not ``ascii_only``)."""
    out: list[str] = []
    _write(value, out, ascii_only)
    return "".join(out).encode("utf-8", "surrogatepass")


def _write(value: Any, out: list[str], ascii_only: bool) -> None:
    if isinstance(value, Raw):
        out.append(value.text)
    elif isinstance(value, Dup):
        _write_object(value.pairs, out, ascii_only)
    elif isinstance(value, dict):
        _write_object(value.items(), out, ascii_only)
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, ascii_only)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=ascii_only))


def _write_object(pairs, out: list[str], ascii_only: bool) -> None:
    out.append("{")
    for i, (key, item) in enumerate(pairs):
        if i:
            out.append(",")
        out.append(json.dumps(key, ensure_ascii=ascii_only))
        out.append(":")
        _write(item, out, ascii_only)
    out.append("}")


# ---- values --------------------------------------------------------------------------

def _nested(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    if kind == "object":
        return Raw('{"a":' * depth + "1" + "}" * depth)
    # objects in arrays, the shape of schemas and content blocks
    return Raw('[{"type":' * depth + '"x"' + "}]" * depth)


DEPTHS = (40, 100, 129, 200, 254, 255, 256, 400, 900, 1000, 1024, 1025)

NUMBERS = (0, -1, 1, 2, 255, 65536, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1,
           2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30), 10**400, 0.5, -0.0, 1e308,
           -1e308, 5e-324, 3.0, 1e-7)
LITERALS = ("NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "0e0", "-0",
            "1.0e+2", "00", "01", ".5", "1.", "+1", "0x10", "nan", "inf", "undefined", "None",
            "True", "'a'", "1_000")
STRINGS = ("", " ", "\x00", "\u202e", "\ud800", "\udfff", "😀" * 3, "é" * 10, "\r\n\t",
           "a" * 70_000, "../../../etc/passwd", "%s%n%x", "{}", "[]", "null", "true", "0",
           "-1", "1e309", "NaN", "<script>", "' OR 1=1 --", "\\u0000", "data:image/png;base64,",
           "data:image/png;base64,!!!", "http://", "https://127.0.0.1:1/x.png",
           "data:text/plain;base64,aGk=", "2026-13-01", "0000-01", "9999-12", "-1",
           "AKIA" + "0" * 16)
# Words of the dialects: roles, block and item types, tool choices, field names.
WORDS = ("user", "assistant", "system", "developer", "tool", "function", "model", "text",
         "image", "image_url", "input_text", "input_image", "output_text", "refusal",
         "tool_use", "tool_result", "thinking", "redacted_thinking", "toolUse", "toolResult",
         "toolSpec", "reasoningContent", "cachePoint", "guardContent", "json", "bytes",
         "s3Location", "message", "function_call", "function_call_output", "reasoning",
         "item_reference", "json_object", "json_schema", "auto", "any", "none", "required",
         "custom", "base64", "url", "png", "jpeg", "success", "error", "float", "day", "month",
         "total", "content", "type", "name", "input", "arguments", "parameters", "schema",
         "input_schema", "inputSchema", "properties", "items", "anyOf", "$ref", "enum",
         "const", "minLength", "maxLength", "minItems", "maxItems", "pattern", "format",
         "stream", "max_tokens", "messages", "tools", "tool_choice", "metadata", "include_usage")


_LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
_KEYS = st.text(max_size=8) | st.sampled_from(WORDS)
JSON_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=12)
NASTY_VALUES = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(LITERALS).map(Raw),
    st.sampled_from(STRINGS),
    st.sampled_from(WORDS),
    st.builds(_nested, st.sampled_from(DEPTHS), st.sampled_from(("list", "object", "mixed"))),
    st.sampled_from(({}, [], [[]], {"": None}, [None], [{}], {"type": {}}, {"type": []},
                     {"type": None}, {"type": 1}, True, False, None)).map(copy.deepcopy),
    st.integers(1, 3000).map(lambda n: list(range(n))),
    st.integers(1, 600).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.text(st.characters(codec="utf-8"), max_size=40),
    JSON_VALUES,
)
ANY_VALUE = NASTY_VALUES | JSON_VALUES


# ---- mutation ---------------------------------------------------------------------------

def _slots(body: Any) -> list[tuple[Any, Any]]:
    """Every place a value sits in ``body``: (its container, its key or index)."""
    slots, stack = [], [body]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else ())
        for key, value in items:
            slots.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return slots


def _retyped(value: Any) -> Any:
    """The same value in another JSON type."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return "null"


# "tweak" (a value of the same type) most often: such bodies stay nearly valid and get past
# the first checks to the upstream encoders.
_OPS = st.sampled_from(("tweak", "tweak", "tweak", "tweak", "nasty", "nasty", "random", "drop",
                        "retype", "wrap", "word", "rename", "duplicate_key", "add", "move",
                        "repeat"))
_REPEATS = st.sampled_from((2, 3, 50, 300))
_NEW_KEY = st.sampled_from(WORDS) | st.text(max_size=6)


@st.composite
def _mutate_once(draw, body: Any) -> Any:
    slots = _slots(body)
    if not slots or draw(st.integers(0, 40)) == 40:
        return draw(NASTY_VALUES)  # the whole body replaced
    parent, key = slots[draw(st.integers(0, len(slots) - 1))]
    value = parent[key]
    op = draw(_OPS)
    if op == "tweak":
        parent[key] = draw(_tweak(value))
    elif op == "nasty":
        parent[key] = draw(NASTY_VALUES)
    elif op == "random":
        parent[key] = draw(JSON_VALUES)
    elif op == "drop":
        del parent[key]
    elif op == "retype":
        parent[key] = _retyped(value)
    elif op == "wrap":
        parent[key] = ([value], {"value": value}, {"type": value}, [value, value])[
            draw(st.integers(0, 3))]
    elif op == "word":
        parent[key] = draw(st.sampled_from(WORDS))
    elif op == "rename" and isinstance(parent, dict):
        del parent[key]
        parent[draw(_NEW_KEY)] = value
    elif op == "duplicate_key" and isinstance(parent, dict):
        pairs = list(parent.items())
        at = [k for k, _ in pairs].index(key) + draw(st.integers(0, 1))
        pairs.insert(at, (key, draw(ANY_VALUE)))
        return _replace(body, parent, Dup(tuple(pairs)))
    elif op == "add":
        extra = draw(ANY_VALUE)
        if isinstance(parent, dict):
            parent[draw(_NEW_KEY)] = extra
        else:
            parent.insert(draw(st.integers(0, len(parent))), extra)
    elif op == "move":
        other_parent, other_key = slots[draw(st.integers(0, len(slots) - 1))]
        parent[key] = copy.deepcopy(other_parent[other_key])
    elif op == "repeat" and isinstance(parent, list):
        parent[key:key + 1] = [value] * draw(_REPEATS)
    return body


def _tweak(value: Any) -> st.SearchStrategy:
    """Another value of the same JSON type."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, (int, float)):
        return _NUMBERS
    if isinstance(value, str):
        return _TEXTS
    if isinstance(value, list):
        return st.sampled_from(([], value[::-1], value + value[-1:], value[:1])).map(copy.deepcopy)
    if isinstance(value, dict):
        return _NEW_KEY.flatmap(lambda k: ANY_VALUE.map(lambda v: {**value, k: v}))
    return ANY_VALUE


_NUMBERS = st.sampled_from(NUMBERS) | st.sampled_from(LITERALS).map(Raw)
_TEXTS = st.sampled_from(STRINGS) | st.sampled_from(WORDS) | st.text(max_size=30)


def _replace(body: Any, target: Any, new: Any) -> Any:
    """``body`` with the container ``target`` (found by identity) replaced by ``new``."""
    if body is target:
        return new
    for parent, key in _slots(body):
        if parent[key] is target:
            parent[key] = new
            return body
    return body


_MUTATIONS = st.sampled_from((1, 1, 1, 2, 2, 3, 4))


@st.composite
def mutated(draw, seeds: list[Any]) -> bytes:
    """The JSON text of one seed, changed in one to four places (mostly one); now and then with the
    text itself broken (cut short, or not UTF-8)."""
    body = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(_MUTATIONS)):
        if isinstance(body, (Dup, Raw)):
            break
        body = draw(_mutate_once(body))
    data = dumps(body, ascii_only=draw(st.booleans()))
    damage = draw(st.integers(0, 30))
    if damage == 29:
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == 30:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00")))\
            + data[at:]
    return data
