"""Canonical messages to the chat messages the model's own template (from the GGUF) renders.

The template knows only text turns, so tool calls, tool results and the tool list are
written as text the model can read; a tool call is always the JSON object
``{"name": ..., "arguments": {...}}``, the same shape the model is asked to answer with.
"""

from __future__ import annotations

import json

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    DocumentBlock,
    Message,
    Request,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

TOOLS_AUTO = (
    "You can call these tools:\n{tools}\n"
    'To call a tool, answer with only a JSON object {{"name": <tool name>, "arguments": '
    "<arguments object>}}. Otherwise answer normally."
)
TOOLS_FORCED = (
    "You can call these tools:\n{tools}\n"
    'Call one: answer with only a JSON object {{"name": <tool name>, "arguments": '
    "<arguments object>}}."
)
JSON_OBJECT = "Answer with a JSON object only."
JSON_SCHEMA = "Answer with a JSON object only, matching this JSON schema: {schema}"


def chat_messages(request: Request, tools_mode: str) -> list[dict[str, str]]:
    """``tools_mode``: "auto", "forced" or "none" (see ``plan.tools_mode``)."""
    out: list[dict[str, str]] = []
    system = system_prompt(request, tools_mode)
    if system:
        out.append({"role": "system", "content": system})
    names = _tool_names_by_id(request.messages)
    for message in request.messages:
        out.append({"role": message.role, "content": _message_text(message, names)})
    return out


def system_prompt(request: Request, tools_mode: str) -> str:
    parts = [request.system] if request.system else []
    if tools_mode != "none":
        template = TOOLS_FORCED if tools_mode == "forced" else TOOLS_AUTO
        parts.append(template.format(tools=_describe_tools(request)))
    fmt = request.response_format
    if tools_mode != "forced" and fmt is not None and fmt.type == "json_object":
        parts.append(JSON_OBJECT)
    if tools_mode != "forced" and fmt is not None and fmt.type == "json_schema":
        parts.append(JSON_SCHEMA.format(schema=json.dumps(fmt.schema or {})))
    return "\n\n".join(parts)


def tool_call_text(name: str, arguments: dict) -> str:
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def _describe_tools(request: Request) -> str:
    lines = []
    for tool in request.tools:
        entry = {"name": tool.name, "description": tool.description or "",
                 "parameters": tool.input_schema}
        lines.append(json.dumps(entry, ensure_ascii=False))
    return "\n".join(lines)


def _tool_names_by_id(messages: list[Message]) -> dict[str, str]:
    return {
        b.id: b.name for m in messages for b in m.content if isinstance(b, ToolUseBlock)
    }


def _message_text(message: Message, tool_names: dict[str, str]) -> str:
    parts = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            parts.append(tool_call_text(block.name, block.input))
        elif isinstance(block, ToolResultBlock):
            parts.append(_tool_result_text(block, tool_names))
        elif block.type == "image":
            raise InvalidRequest("images are not supported", param="messages")
        elif isinstance(block, DocumentBlock):
            if block.data is not None:
                raise InvalidRequest(f"{block.media_type} documents are not supported",
                                     param="messages")
            parts.append(block.as_text())
        # Thinking blocks are the model's own scratch work; it is not shown them again.
    return "\n\n".join(parts)


def _tool_result_text(block: ToolResultBlock, tool_names: dict[str, str]) -> str:
    name = tool_names.get(block.tool_use_id, "tool")
    label = "error" if block.is_error else "result"
    body = "\n".join(c.text for c in block.content if isinstance(c, TextBlock))
    return f"Tool {name} (call {block.tool_use_id}) {label}:\n{body}"
