"""``toolConfig`` and ``outputConfig`` (structured output): wire JSON <-> canonical."""

from __future__ import annotations

import re
from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    Message, ResponseFormat, Tool, ToolChoice, ToolResultBlock, ToolUseBlock,
)

from . import _check as check

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def decode_tool_config(value: Any) -> tuple[list[Tool], ToolChoice | None]:
    data = check.obj(value, "toolConfig")
    raw = check.array(check.required(data, "tools", "toolConfig.tools"), "toolConfig.tools",
                      nonempty=True)
    tools = [t for t in (_decode_tool(item, f"toolConfig.tools.{i}")
                         for i, item in enumerate(raw)) if t is not None]
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise check.fail(f"tool names must be unique; {tool.name!r} is repeated",
                             "toolConfig.tools")
        seen.add(tool.name)
    choice = None
    if data.get("toolChoice") is not None:
        choice = _decode_choice(data["toolChoice"], seen)
    return tools, choice


def _decode_tool(raw: Any, param: str) -> Tool | None:
    kind, value = check.union(raw, param, ("toolSpec", "systemTool", "cachePoint"))
    if kind == "cachePoint":
        return None  # a caching hint; canonical requests carry none
    if kind != "toolSpec":
        raise check.fail(f"{kind} tools are not supported by this gateway; only toolSpec is",
                         param)
    p = f"{param}.toolSpec"
    spec = check.obj(value, p)
    name = check.string(check.required(spec, "name", f"{p}.name"), f"{p}.name")
    if not _TOOL_NAME.match(name):
        raise check.fail("must be 1-64 letters, digits, underscores or hyphens", f"{p}.name")
    description = spec.get("description")
    if description is not None:
        check.string(description, f"{p}.description", nonempty=True)
    kind, schema = check.union(check.required(spec, "inputSchema", f"{p}.inputSchema"),
                               f"{p}.inputSchema", ("json",))
    schema = check.shallow(check.obj(schema, f"{p}.inputSchema.json"), f"{p}.inputSchema.json")
    return Tool(name=name, description=description, input_schema=schema)


def _decode_choice(value: Any, names: set[str]) -> ToolChoice:
    kind, inner = check.union(value, "toolConfig.toolChoice", ("auto", "any", "tool"))
    check.obj(inner, f"toolConfig.toolChoice.{kind}")
    if kind != "tool":
        return ToolChoice(type=kind)
    p = "toolConfig.toolChoice.tool.name"
    name = check.string(check.required(inner, "name", p), p)
    if name not in names:
        raise check.fail(f"{name!r} is not one of the tools", p)
    return ToolChoice(type="tool", name=name)


def decode_output_config(value: Any) -> ResponseFormat | None:
    data = check.obj(value, "outputConfig")
    if data.get("textFormat") is None:
        return None
    p = "outputConfig.textFormat"
    fmt = check.obj(data["textFormat"], p)
    if fmt.get("type") != "json_schema":
        raise check.fail(f'must be "json_schema", got {check.shown(fmt.get("type"))}',
                         f"{p}.type")
    kind, inner = check.union(check.required(fmt, "structure", f"{p}.structure"),
                              f"{p}.structure", ("jsonSchema",))
    p = f"{p}.structure.jsonSchema"
    definition = check.obj(inner, p)
    text = check.string(check.required(definition, "schema", f"{p}.schema"), f"{p}.schema")
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise check.fail("must be a JSON schema serialized as a string", f"{p}.schema") from None
    name = definition.get("name")
    schema = check.shallow(check.obj(schema, f"{p}.schema"), f"{p}.schema")
    return ResponseFormat(type="json_schema", schema=schema,
                          name=None if name is None else check.string(name, f"{p}.name"))


# ---- canonical -> wire ------------------------------------------------------------------


def encode_tool_config(tools: list[Tool], choice: ToolChoice | None,
                       messages: list[Message]) -> dict | None:
    """The ``toolConfig``, or None when no tools should be offered.

    Converse has no "none" tool choice. Leaving the tools out is the faithful way to say it,
    but Bedrock refuses toolUse/toolResult blocks without a toolConfig, so a conversation
    that already used tools keeps them and the choice falls back to the model's own."""
    if not tools:
        return None
    if choice is not None and choice.type == "none" and not _uses_tools(messages):
        return None
    config: dict[str, Any] = {"tools": [_encode_tool(t) for t in tools]}
    if choice is not None and choice.type in ("auto", "any"):
        config["toolChoice"] = {choice.type: {}}
    elif choice is not None and choice.type == "tool":
        config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


def _uses_tools(messages: list[Message]) -> bool:
    return any(isinstance(b, (ToolUseBlock, ToolResultBlock))
               for m in messages for b in m.content)


def _encode_tool(tool: Tool) -> dict:
    spec: dict[str, Any] = {"name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["inputSchema"] = {"json": tool.input_schema}
    return {"toolSpec": spec}


def encode_output_config(fmt: ResponseFormat, drop: Any) -> dict | None:
    """The ``outputConfig`` for a JSON response format, or None for plain text. A
    deployment that lists outputConfig as unsupported refuses rather than silently
    returning free text."""
    if fmt.type == "text":
        return None
    if "outputConfig" in drop:
        raise InvalidRequest(f"response_format {fmt.type} is not supported by this deployment",
                             param="response_format")
    schema = fmt.schema if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
    definition: dict[str, Any] = {"schema": orjson.dumps(schema).decode()}
    if fmt.name:
        definition["name"] = fmt.name
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
