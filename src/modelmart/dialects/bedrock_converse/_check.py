"""Small validators for client JSON. Each raises ``InvalidRequest`` naming the bad field by
its path in the Converse request (``messages.0.content.1.toolUse.name``)."""

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
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def obj(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise fail(f"expected an object, got {describe(value)}", param)
    return value


def array(value: Any, param: str, *, nonempty: bool = False) -> list:
    if not isinstance(value, list):
        raise fail(f"expected an array, got {describe(value)}", param)
    if nonempty and not value:
        raise fail("must contain at least one item", param)
    return value


def string(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(f"expected a string, got {describe(value)}", param)
    if nonempty and not value:
        raise fail("must not be empty", param)
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
    if data.get(key) is None:
        raise fail("field required", param)
    return data[key]


def union(data: Any, param: str, known: tuple[str, ...]) -> tuple[str, Any]:
    """The one member set in a Converse union (``{"text": ...}``, ``{"toolUse": {...}}``)."""
    members = [k for k, v in obj(data, param).items() if v is not None]
    if len(members) != 1:
        found = ", ".join(members) if members else "none"
        raise fail(f"exactly one of {', '.join(known)} must be set, found {found}", param)
    return members[0], data[members[0]]
