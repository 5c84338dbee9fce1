"""Small validators for client JSON. Each raises ``InvalidRequest`` naming the bad field
the way the Messages API does (``messages.0.content.1.type``)."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest

_JSON_TYPE = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean",
    int: "an integer", float: "a number", type(None): "null",
}


def describe(value: Any) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def fail(message: str, param: str | None) -> InvalidRequest:
    text = f"{param}: {message}" if param else message
    return InvalidRequest(text, param=param)


def obj(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise fail(f"expected an object, got {describe(value)}", param)
    return value


def array(value: Any, param: str) -> list:
    if not isinstance(value, list):
        raise fail(f"expected an array, got {describe(value)}", param)
    return value


def string(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(f"expected a string, got {describe(value)}", param)
    if nonempty and not value:
        raise fail("must not be empty", param)
    return value


def boolean(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise fail(f"expected a boolean, got {describe(value)}", param)
    return value


def integer(value: Any, param: str, *, minimum: int | None = None) -> int:
    # bool is an int subclass in Python but not in JSON
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"expected an integer, got {describe(value)}", param)
    if minimum is not None and value < minimum:
        raise fail(f"must be at least {minimum}, got {value}", param)
    return value


def number(value: Any, param: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"expected a number, got {describe(value)}", param)
    if not low <= value <= high:
        raise fail(f"must be between {low:g} and {high:g}, got {value}", param)
    return float(value)


def required(data: dict, key: str, param: str) -> Any:
    if key not in data or data[key] is None:
        raise fail("field required", param)
    return data[key]
