"""Tools, tool choice and structured output settings: wire JSON <-> canonical."""

from __future__ import annotations

import re
from typing import Any

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import ResponseFormat, Tool, ToolChoice

from . import _check as check

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_CHOICES = ("auto", "any", "tool", "none")


def decode_tools(value: Any) -> list[Tool]:
    tools = [_decode_tool(raw, f"tools.{i}") for i, raw in enumerate(check.array(value, "tools"))]
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.name in seen:
            raise check.fail(f"tool names must be unique; {tool.name!r} is repeated",
                             f"tools.{i}.name")
        seen.add(tool.name)
    return tools


def _decode_tool(raw: Any, param: str) -> Tool:
    data = check.obj(raw, param)
    kind = data.get("type")
    if kind not in (None, "custom"):
        raise check.fail(f"server tools ({check.shown(kind)}) are not supported by this gateway; "
                         "only custom tools with name, description and input_schema are",
                         f"{param}.type")
    name = check.string(check.required(data, "name", f"{param}.name"), f"{param}.name")
    if not _TOOL_NAME.match(name):
        raise check.fail("must be 1-128 letters, digits, underscores or hyphens",
                         f"{param}.name")
    description = data.get("description")
    if description is not None:
        check.string(description, f"{param}.description")
    p = f"{param}.input_schema"
    schema = check.shallow(check.obj(check.required(data, "input_schema", p), p), p)
    if schema.get("type") != "object":
        raise check.fail('must be a JSON schema with "type": "object"', f"{p}.type")
    return Tool(name=name, description=description, input_schema=schema)


def decode_tool_choice(value: Any, tools: list[Tool]) -> ToolChoice:
    data = check.obj(value, "tool_choice")
    kind = check.required(data, "type", "tool_choice.type")
    if kind not in _CHOICES:
        raise check.fail(f"must be one of {', '.join(_CHOICES)}, got {check.shown(kind)}",
                         "tool_choice.type")
    choice = ToolChoice(type=kind)
    if kind in ("any", "tool") and not tools:
        raise check.fail(f"tool_choice {kind!r} needs at least one tool in tools", "tool_choice")
    if kind == "tool":
        choice.name = check.string(check.required(data, "name", "tool_choice.name"),
                                   "tool_choice.name")
        if choice.name not in {t.name for t in tools}:
            raise check.fail(f"{choice.name!r} is not one of the tools", "tool_choice.name")
    disable = data.get("disable_parallel_tool_use")
    if disable is not None:
        choice.disable_parallel = check.boolean(disable, "tool_choice.disable_parallel_tool_use")
    return choice


def decode_output_format(value: Any, param: str) -> ResponseFormat:
    data = check.obj(value, param)
    if data.get("type") != "json_schema":
        raise check.fail(f'type must be "json_schema", got {check.shown(data.get("type"))}',
                         f"{param}.type")
    p = f"{param}.schema"
    schema = check.shallow(check.obj(check.required(data, "schema", p), p), p)
    return ResponseFormat(type="json_schema", schema=schema)


# ---- canonical -> wire ------------------------------------------------------------------


def encode_tool(tool: Tool) -> dict:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = tool.input_schema
    return out


def encode_tool_choice(choice: ToolChoice) -> dict:
    out: dict[str, Any] = {"type": choice.type}
    if choice.type == "tool":
        out["name"] = choice.name
    if choice.disable_parallel and choice.type != "none":
        out["disable_parallel_tool_use"] = True
    return out


def encode_output_format(fmt: ResponseFormat, drop: Any) -> dict | None:
    """The ``output_config.format`` for a JSON response format, or None for plain text.

    ``output_config.format`` is the GA form of Anthropic structured outputs (the beta's
    top-level ``output_format``); deployments of models without it list "output_format"
    in their unsupported params, and we refuse rather than silently return free text."""
    if fmt.type == "text":
        return None
    if "output_format" in drop or "output_config" in drop:
        raise InvalidRequest(f"response_format {fmt.type} is not supported by this deployment",
                             param="response_format")
    schema = fmt.schema if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
    return {"type": "json_schema", "schema": schema}
