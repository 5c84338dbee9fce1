"""Small validators for client JSON. Each raises ``InvalidRequest`` naming the bad field
the way the Messages API does (``messages.0.content.1.type``)."""

from __future__ import annotations

from modelmart.dialects._checks import describe, fail, integer, number, path_checks, shown

__all__ = ["array", "boolean", "describe", "fail", "integer", "number", "obj", "required",
           "shallow", "shallow_fields", "shown", "string"]

_CHECKS = path_checks()
obj = _CHECKS.obj
array = _CHECKS.array
string = _CHECKS.string
boolean = _CHECKS.boolean
required = _CHECKS.required
shallow = _CHECKS.shallow
shallow_fields = _CHECKS.shallow_fields
