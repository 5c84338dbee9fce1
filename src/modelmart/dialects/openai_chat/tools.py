"""``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``, both ways."""

from __future__ import annotations

import re
from typing import Any, Callable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import ResponseFormat, Tool, ToolChoice

from ._validate import (
    required,
    type_error,
    value_error,
    want_bool,
    want_enum,
    want_list,
    want_object,
    want_shallow,
    want_str,
)

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_CHOICE_WORDS = {"auto": "auto", "none": "none", "required": "any"}
_WORD_FOR = {v: k for k, v in _CHOICE_WORDS.items()}


def default_parameters() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


def decode_tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    return [_tool(t, f"tools[{i}]") for i, t in enumerate(want_list(raw, "tools", nonempty=True))]


def _tool(raw: Any, param: str) -> Tool:
    spec = want_object(raw, param)
    want_enum(required(spec, "type", f"{param}.type"), f"{param}.type", ("function",))
    fn = want_object(required(spec, "function", f"{param}.function"), f"{param}.function")
    name = want_name(required(fn, "name", f"{param}.function.name"), f"{param}.function.name")
    desc = fn.get("description")
    if desc is not None:
        want_str(desc, f"{param}.function.description")
    params = fn.get("parameters")
    if params is None:
        params = default_parameters()
    p = f"{param}.function.parameters"
    want_shallow(want_object(params, p), p)
    if fn.get("strict") is not None:
        want_bool(fn["strict"], f"{param}.function.strict")
    return Tool(name=name, description=desc, input_schema=params)


def want_name(value: Any, param: str) -> str:
    """A function or schema name as OpenAI allows it (Chat Completions and Responses)."""
    name = want_str(value, param)
    if not _TOOL_NAME.fullmatch(name):
        raise value_error(param, f"{name!r} does not match '^[a-zA-Z0-9_-]{{1,64}}$'.")
    return name


def decode_tool_choice(
    raw: Any, parallel: Any, tools: list[Tool],
    named: Callable[[dict, list[Tool]], ToolChoice] | None = None,
) -> ToolChoice | None:
    """``named`` decodes the object form, which the Responses API spells differently."""
    if parallel is not None:
        want_bool(parallel, "parallel_tool_calls")
    choice = None if raw is None else _choice(raw, tools, named or _named_choice)
    if parallel is False and tools:
        choice = choice or ToolChoice("auto")
        choice.disable_parallel = True
    return choice


def _choice(raw: Any, tools: list[Tool], named: Callable) -> ToolChoice:
    if isinstance(raw, str):
        kind = _CHOICE_WORDS[want_enum(raw, "tool_choice", tuple(_CHOICE_WORDS))]
        if kind == "any" and not tools:
            raise value_error("tool_choice", "'required' is only allowed when 'tools' are specified.")
        return ToolChoice(kind)
    if not isinstance(raw, dict):
        raise type_error("tool_choice", "one of a string or object", raw)
    return named(raw, tools)


def _named_choice(raw: dict, tools: list[Tool]) -> ToolChoice:
    want_enum(required(raw, "type", "tool_choice.type"), "tool_choice.type", ("function",))
    fn = want_object(required(raw, "function", "tool_choice.function"), "tool_choice.function")
    name = want_str(required(fn, "name", "tool_choice.function.name"), "tool_choice.function.name")
    if name not in {t.name for t in tools}:
        raise InvalidRequest(
            f"Invalid value for 'tool_choice': no function named {name!r} was specified "
            "in the 'tools' parameter.",
            param="tool_choice.function.name",
        )
    return ToolChoice("tool", name=name)


def decode_response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    spec = want_object(raw, "response_format")
    kind = want_enum(
        required(spec, "type", "response_format.type"),
        "response_format.type",
        ("text", "json_object", "json_schema"),
    )
    if kind != "json_schema":
        return ResponseFormat(kind)
    js = want_object(
        required(spec, "json_schema", "response_format.json_schema"), "response_format.json_schema"
    )
    p = "response_format.json_schema"
    name = want_name(required(js, "name", f"{p}.name"), f"{p}.name")
    schema = js.get("schema")
    if schema is not None:
        want_shallow(want_object(schema, f"{p}.schema"), f"{p}.schema")
    strict = js.get("strict")
    if strict is not None:
        want_bool(strict, f"{p}.strict")
    return ResponseFormat("json_schema", schema=schema, name=name, strict=strict)


# ---- encode ----------------------------------------------------------------------------


def encode_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        fn: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.input_schema
        out.append({"type": "function", "function": fn})
    return out


def encode_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice_word(choice)


def choice_word(choice: ToolChoice) -> str:
    """``auto``, ``none`` or ``required`` for a choice that names no tool."""
    return _WORD_FOR[choice.type]


def encode_response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    js: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict is not None:
        js["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": js}
