"""Checks that raise ``InvalidRequest`` naming the offending parameter, worded like OpenAI's
own 400s so clients see the message they would get from api.openai.com."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest
from modelmart.dialects._checks import MAX_NESTING, Checks, describe, is_int, is_number, shown

__all__ = [
    "is_int", "is_number", "json_type", "missing", "required", "type_error", "value_error",
    "want_bool", "want_enum", "want_int", "want_list", "want_model", "want_number", "want_object",
    "want_shallow", "want_shallow_fields", "want_str",
]


def json_type(value: Any) -> str:
    # OpenAI calls a JSON float a decimal
    return "a decimal" if isinstance(value, float) else describe(value)


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)


def type_error(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param=param,
    )


def value_error(param: str, detail: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {detail}", param=param)


def _empty(param: str, kind: str) -> InvalidRequest:
    article = "an" if kind == "array" else "a"
    return InvalidRequest(
        f"Invalid '{param}': empty {kind}. Expected {article} {kind} with minimum length 1, "
        f"but got an empty {kind} instead.",
        param=param,
    )


def _too_deep(param: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': nested deeper than {MAX_NESTING} levels.",
                          param=param)


_CHECKS = Checks(wrong_type=type_error, empty=_empty, missing=missing, too_deep=_too_deep)
required = _CHECKS.required
want_object = _CHECKS.obj
want_list = _CHECKS.array
want_str = _CHECKS.string
want_bool = _CHECKS.boolean
want_shallow = _CHECKS.shallow
want_shallow_fields = _CHECKS.shallow_fields


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
            f"Invalid value for '{param}': {shown(value)}. Supported values are: {listed}.",
            param=param,
        )
    return value


def want_model(data: Any) -> str:
    """The ``model`` of a request body, which must be a JSON object (Chat Completions and
    Embeddings word both errors alike)."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = data.get("model")
    if model is None:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    return want_str(model, "model", nonempty=True)
