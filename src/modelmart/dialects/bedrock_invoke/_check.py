"""Small validators for InvokeModel bodies, worded ``{field}: {message}`` like the other
AWS dialect (``inferenceConfig.maxTokens: expected an integer, got a string``)."""

from __future__ import annotations

from modelmart.dialects._checks import describe, fail, integer, is_int, number, path_checks

__all__ = ["array", "boolean", "describe", "fail", "integer", "is_int", "number", "obj",
           "required", "string", "only"]

_CHECKS = path_checks()
obj = _CHECKS.obj
array = _CHECKS.array
string = _CHECKS.string
boolean = _CHECKS.boolean
required = _CHECKS.required


def only(data: dict, known: frozenset[str], param: str | None = None) -> None:
    """Refuse keys outside ``known``, as Bedrock does ("extraneous key [x] is not
    permitted"): a field the gateway would silently ignore is a field the client thinks
    it set."""
    if known.issuperset(data):
        return
    extra = sorted(k for k in data if k not in known)
    if extra:
        where = f"{param}." if param else ""
        raise fail(f"extraneous key [{where}{extra[0]}] is not permitted; known keys: "
                   f"{', '.join(sorted(known))}", f"{where}{extra[0]}")
