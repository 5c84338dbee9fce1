"""``tools`` (flat function tools), ``tool_choice``, ``parallel_tool_calls`` and
``text.format``: decoded from clients, and echoed back in the response object."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request, ResponseFormat, Tool, ToolChoice
from modelmart.dialects._checks import shown
from modelmart.dialects.openai_chat import tools as chat_tools
from modelmart.dialects.openai_chat._validate import (
    required, want_bool, want_enum, want_list, want_object, want_shallow, want_str,
)
from modelmart.dialects.openai_chat.tools import choice_word, default_parameters, want_name


def decode_tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    tools = []
    for i, spec in enumerate(want_list(raw, "tools")):
        p = f"tools[{i}]"
        spec = want_object(spec, p)
        kind = required(spec, "type", f"{p}.type")
        if kind != "function":
            raise InvalidRequest(f"Tools of type {shown(kind)} are not supported; only "
                                 "'function' tools are.", param=f"{p}.type")
        name = want_name(required(spec, "name", f"{p}.name"), f"{p}.name")
        desc = spec.get("description")
        if desc is not None:
            want_str(desc, f"{p}.description")
        params = spec.get("parameters")
        params = default_parameters() if params is None else want_shallow(
            want_object(params, f"{p}.parameters"), f"{p}.parameters")
        if spec.get("strict") is not None:
            want_bool(spec["strict"], f"{p}.strict")  # canonical tools hold no strict flag
        tools.append(Tool(name=name, description=desc, input_schema=params))
    return tools


def decode_tool_choice(raw: Any, parallel: Any, tools: list[Tool]) -> ToolChoice | None:
    return chat_tools.decode_tool_choice(raw, parallel, tools, _named_choice)


def _named_choice(raw: dict, tools: list[Tool]) -> ToolChoice:
    want_enum(required(raw, "type", "tool_choice.type"), "tool_choice.type", ("function",))
    name = want_str(required(raw, "name", "tool_choice.name"), "tool_choice.name")
    if name not in {t.name for t in tools}:
        raise InvalidRequest(f"Tool choice '{name}' not found in 'tools' parameter.",
                             param="tool_choice.name")
    return ToolChoice("tool", name=name)


def decode_text_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    text = want_object(raw, "text")
    if text.get("format") is None:
        return None
    p = "text.format"
    spec = want_object(text["format"], p)
    kind = want_enum(required(spec, "type", f"{p}.type"), f"{p}.type",
                     ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return ResponseFormat(kind)
    name = want_name(required(spec, "name", f"{p}.name"), f"{p}.name")
    schema = want_shallow(want_object(required(spec, "schema", f"{p}.schema"), f"{p}.schema"),
                          f"{p}.schema")
    strict = spec.get("strict")
    if strict is not None:
        want_bool(strict, f"{p}.strict")
    return ResponseFormat("json_schema", schema=schema, name=name, strict=strict)


# ---- the echo in response objects -------------------------------------------------------


def echo_fields(req: Request | None) -> dict[str, Any]:
    """The request settings a ``response`` object repeats back to the client."""
    if req is None:
        return {"tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
                "temperature": None, "top_p": None, "instructions": None, "metadata": {},
                "text": {"format": {"type": "text"}}, "max_output_tokens": None, "user": None}
    choice = req.tool_choice
    return {
        "tools": [_tool(t) for t in req.tools],
        "tool_choice": _choice_echo(choice),
        "parallel_tool_calls": not (choice and choice.disable_parallel),
        "temperature": req.temperature,
        "top_p": req.top_p,
        "instructions": req.system,
        "metadata": req.extra.get("metadata") or {},
        "text": {"format": _format_echo(req.response_format)},
        "max_output_tokens": req.max_tokens,
        "user": req.user,
    }


def _tool(t: Tool) -> dict[str, Any]:
    return {"type": "function", "name": t.name, "description": t.description,
            "parameters": t.input_schema, "strict": None}


def _choice_echo(choice: ToolChoice | None) -> Any:
    if choice is None:
        return "auto"
    if choice.type == "tool":
        return {"type": "function", "name": choice.name}
    return choice_word(choice)


def _format_echo(fmt: ResponseFormat | None) -> dict[str, Any]:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt else "text"}
    return {"type": "json_schema", "name": fmt.name or "response", "schema": fmt.schema or {},
            "strict": fmt.strict}
