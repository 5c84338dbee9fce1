"""Small validators for Gemini request JSON. Google's REST API accepts both the camelCase
and the snake_case spelling of every field (proto JSON mapping), and its own docs use
both (``system_instruction``, ``inline_data``), so every read goes through ``field``."""

from __future__ import annotations

import re
from typing import Any

from modelmart.dialects._checks import describe, fail, integer, is_number, path_checks, shown

__all__ = ["array", "describe", "fail", "field", "has", "integer", "number", "obj", "one_of",
           "shallow", "shallow_fields", "snake", "string"]

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")
_CHECKS = path_checks()
obj = _CHECKS.obj
array = _CHECKS.array
string = _CHECKS.string
shallow = _CHECKS.shallow
shallow_fields = _CHECKS.shallow_fields


def snake(camel: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", camel).lower()


def field(obj: dict, camel: str) -> Any:
    """``obj[camel]``, or its snake_case twin, or None."""
    value = obj.get(camel)
    return obj.get(snake(camel)) if value is None else value


def has(obj: dict, camel: str) -> bool:
    return camel in obj or snake(camel) in obj


def number(value: Any, param: str, lo: float, hi: float | None = None) -> float:
    if not is_number(value):
        raise fail(f"expected a number, got {describe(value)}", param)
    if value < lo or (hi is not None and value > hi):
        raise fail(f"{value} is out of range [{lo}, {hi if hi is not None else 'inf'}]", param)
    return value


def one_of(value: Any, param: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise fail(f"invalid value {shown(value)}; expected one of {', '.join(choices)}", param)
    return value
