"""Small validators for Gemini request JSON. Google's REST API accepts both the camelCase
and the snake_case spelling of every field (proto JSON mapping), and its own docs use
both (``system_instruction``, ``inline_data``), so every read goes through ``field``."""

from __future__ import annotations

import re
from typing import Any

from modelmart.core.errors import InvalidRequest

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")
_JSON_TYPE = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean",
    int: "an integer", float: "a number", type(None): "null",
}


def snake(camel: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", camel).lower()


def field(obj: dict, camel: str) -> Any:
    """``obj[camel]``, or its snake_case twin, or None."""
    value = obj.get(camel)
    return obj.get(snake(camel)) if value is None else value


def has(obj: dict, camel: str) -> bool:
    return camel in obj or snake(camel) in obj


def fail(message: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def describe(value: Any) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def obj(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise fail(f"expected an object, got {describe(value)}", param)
    return value


def array(value: Any, param: str, *, nonempty: bool = False) -> list:
    if not isinstance(value, list):
        raise fail(f"expected an array, got {describe(value)}", param)
    if nonempty and not value:
        raise fail("must not be empty", param)
    return value


def string(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(f"expected a string, got {describe(value)}", param)
    if nonempty and not value:
        raise fail("must not be empty", param)
    return value


def integer(value: Any, param: str, lo: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(f"expected an integer, got {describe(value)}", param)
    if lo is not None and value < lo:
        raise fail(f"must be at least {lo}, got {value}", param)
    return value


def number(value: Any, param: str, lo: float, hi: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise fail(f"expected a number, got {describe(value)}", param)
    if value < lo or (hi is not None and value > hi):
        raise fail(f"{value} is out of range [{lo}, {hi if hi is not None else 'inf'}]", param)
    return value


def one_of(value: Any, param: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise fail(f"invalid value {value!r}; expected one of {', '.join(choices)}", param)
    return value
