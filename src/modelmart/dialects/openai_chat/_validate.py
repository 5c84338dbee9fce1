"""Checks that raise ``InvalidRequest`` naming the offending parameter, worded like OpenAI's
own 400s so clients see the message they would get from api.openai.com."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest

_MISSING = object()


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)


def type_error(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param=param,
    )


def value_error(param: str, detail: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {detail}", param=param)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def required(obj: dict, key: str, param: str) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        raise missing(param)
    return value


def want_object(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise type_error(param, "an object", value)
    return value


def want_list(value: Any, param: str, *, nonempty: bool = False) -> list:
    if not isinstance(value, list):
        raise type_error(param, "an array", value)
    if nonempty and not value:
        raise InvalidRequest(
            f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param=param,
        )
    return value


def want_str(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    if nonempty and not value:
        raise InvalidRequest(
            f"Invalid '{param}': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param=param,
        )
    return value


def want_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise type_error(param, "a boolean", value)
    return value


def want_int(value: Any, param: str, lo: int | None = None, hi: int | None = None) -> int:
    if not is_int(value):
        raise type_error(param, "an integer", value)
    _check_range(value, param, lo, hi)
    return value


def want_number(value: Any, param: str, lo: float | None = None, hi: float | None = None) -> float:
    if not is_number(value):
        raise type_error(param, "a number", value)
    _check_range(value, param, lo, hi)
    return value


def _check_range(value: float, param: str, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise InvalidRequest(
            f"Invalid '{param}': {value} is lower than the minimum of {lo}.", param=param
        )
    if hi is not None and value > hi:
        raise InvalidRequest(
            f"Invalid '{param}': {value} is greater than the maximum of {hi}.", param=param
        )


def want_enum(value: Any, param: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices)
        raise InvalidRequest(
            f"Invalid value for '{param}': {value!r}. Supported values are: {listed}.",
            param=param,
        )
    return value
