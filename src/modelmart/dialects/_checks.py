"""Field checks shared by the dialects' request decoders.

Whether a field is an object, a non-empty string or present at all is decided the same way in
every dialect; how the 400 says so is not: each dialect words it as its own API does, and
clients and tests match that text. So a dialect builds one ``Checks`` with its wording and
exports the methods under its own names. Anthropic, Bedrock and Gemini share one wording,
``{param}: {message}``, with ``param`` the field's path as that API writes it
(``messages.0.content``, ``contents[0].parts``); ``path_checks`` builds it.

Values the gateway passes on without reading them (tool schemas, tool-call arguments,
fields it does not know) are bounded in nesting depth (``shallow``, ``MAX_NESTING``): the
JSON encoder refuses 255 levels and Python's recursion limit is near 1,000, so a body nested
deeper than any real request is refused here with a 400 naming the field, before anything
downstream (the upstream encoders, the size estimate, the local model's grammar) recurses
into it. An error message quotes a client's value with ``shown``, never with a bare repr.

Upstream answers are checked more bluntly (``wire_str``): the response decoders turn any
``TypeError`` into their own "malformed upstream response" error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

from modelmart.core.errors import InvalidRequest

_JSON_TYPE = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean",
    int: "an integer", float: "a number", type(None): "null",
}


def describe(value: Any) -> str:
    """The JSON type of ``value`` with its article: ``an object``, ``null``."""
    return _JSON_TYPE.get(type(value), type(value).__name__)


# Deeper than any schema or argument object a real client sends, and far enough below the
# JSON encoder's 255 levels for the few levels an upstream body wraps around a value.
MAX_NESTING = 64


def nesting_exceeds(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` deep (``{}`` is one
    level). A value with no more brackets than ``limit`` in its JSON text cannot (counted
    in C: a tool schema costs ~0.5 us, a third of walking it); others are walked level by
    level rather than recursively, so a value nested 1,000 deep cannot exhaust the stack
    this guards."""
    if type(value) is not dict and type(value) is not list:
        return False
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past 255, or not JSON at all: walk it
        return _deeper_than(value, limit)
    if text.count(b"{") + text.count(b"[") <= limit:
        return False
    return _deeper_than(value, limit)


def _deeper_than(value: dict | list, limit: int) -> bool:
    level = list(value.values()) if type(value) is dict else value
    depth = 1  # of the containers whose items ``level`` holds
    while True:
        below: list = []
        containers = False
        for item in level:
            kind = type(item)
            if kind is dict:
                below.extend(item.values())
                containers = True
            elif kind is list:
                below.extend(item)
                containers = True
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = below


def shown(value: Any) -> str:
    """``value`` as an error message quotes it: a string (the first 100 characters) or a
    number as written, anything else by its JSON type (the repr of a deep structure could
    exceed the recursion limit, and of a large one would fill the message)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 100 else value[:100] + "...")
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    return describe(value)


def is_int(value: Any) -> bool:
    # bool is an int subclass in Python but not in JSON
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def wire_str(value: Any) -> str:
    """``value`` if it is a string, else ``TypeError`` (an upstream answer is malformed)."""
    if not isinstance(value, str):
        raise TypeError
    return value


@dataclass(frozen=True)
class Checks:
    """Type and presence checks; the three callables word the errors they raise."""

    wrong_type: Callable[[str, str, Any], InvalidRequest]  # (param, "an object", value)
    empty: Callable[[str, str], InvalidRequest]  # (param, "array" or "string")
    missing: Callable[[str], InvalidRequest]  # (param)
    too_deep: Callable[[str], InvalidRequest]  # (param)

    def obj(self, value: Any, param: str) -> dict:
        if not isinstance(value, dict):
            raise self.wrong_type(param, "an object", value)
        return value

    def array(self, value: Any, param: str, *, nonempty: bool = False) -> list:
        if not isinstance(value, list):
            raise self.wrong_type(param, "an array", value)
        if nonempty and not value:
            raise self.empty(param, "array")
        return value

    def string(self, value: Any, param: str, *, nonempty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.wrong_type(param, "a string", value)
        if nonempty and not value:
            raise self.empty(param, "string")
        return value

    def boolean(self, value: Any, param: str) -> bool:
        if not isinstance(value, bool):
            raise self.wrong_type(param, "a boolean", value)
        return value

    def shallow(self, value: Any, param: str) -> Any:
        """``value``, if nested at most ``MAX_NESTING`` deep."""
        if nesting_exceeds(value):
            raise self.too_deep(param)
        return value

    def shallow_fields(self, fields: dict) -> dict:
        """``fields`` (passed on unread), if each is nested at most ``MAX_NESTING`` deep."""
        for key, value in fields.items():
            if nesting_exceeds(value):
                raise self.too_deep(key)
        return fields

    def required(self, data: dict, key: str, param: str) -> Any:
        """``data[key]``; absent and null are both missing."""
        if data.get(key) is None:
            raise self.missing(param)
        return data[key]


# --- the "{param}: {message}" wording of Anthropic, Bedrock and Gemini ---


def fail(message: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def path_checks(*, empty_array: str = "must not be empty") -> Checks:
    """Checks worded ``messages.0.content: expected an array, got a string``; only the
    message for an empty array differs between the dialects that use it."""
    return Checks(
        wrong_type=lambda param, expected, value: fail(
            f"expected {expected}, got {describe(value)}", param),
        empty=lambda param, kind: fail(
            empty_array if kind == "array" else "must not be empty", param),
        missing=lambda param: fail("field required", param),
        too_deep=lambda param: fail(f"nested deeper than {MAX_NESTING} levels", param),
    )


def integer(value: Any, param: str, minimum: int | None = None) -> int:
    if not is_int(value):
        raise fail(f"expected an integer, got {describe(value)}", param)
    if minimum is not None and value < minimum:
        raise fail(f"must be at least {minimum}, got {value}", param)
    return value


def number(value: Any, param: str, *, low: float, high: float) -> float:
    """A number in ``[low, high]``, as a float (Anthropic and Bedrock sampling settings)."""
    if not is_number(value):
        raise fail(f"expected a number, got {describe(value)}", param)
    if not low <= value <= high:
        raise fail(f"must be between {low:g} and {high:g}, got {value}", param)
    return float(value)
