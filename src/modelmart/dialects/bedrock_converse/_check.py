"""Small validators for client JSON. Each raises ``InvalidRequest`` naming the bad field by
its path in the Converse request (``messages.0.content.1.toolUse.name``)."""

from __future__ import annotations

from typing import Any

from modelmart.dialects._checks import describe, fail, integer, number, path_checks, shown

__all__ = ["array", "describe", "fail", "integer", "number", "obj", "required", "shallow",
           "shallow_fields", "shown", "string", "union"]

_CHECKS = path_checks(empty_array="must contain at least one item")
obj = _CHECKS.obj
array = _CHECKS.array
string = _CHECKS.string
required = _CHECKS.required
shallow = _CHECKS.shallow
shallow_fields = _CHECKS.shallow_fields


def union(data: Any, param: str, known: tuple[str, ...], *,
          what: str = "member") -> tuple[str, Any]:
    """The one member set in a Converse union (``{"text": ...}``, ``{"toolUse": {...}}``),
    which must be one of ``known``."""
    members = [k for k, v in obj(data, param).items() if v is not None]
    if len(members) != 1:
        found = ", ".join(members) if members else "none"
        raise fail(f"exactly one of {', '.join(known)} must be set, found {found}", param)
    if members[0] not in known:
        raise fail(f"unknown {what} {shown(members[0])}; expected one of {', '.join(known)}",
                   param)
    return members[0], data[members[0]]
