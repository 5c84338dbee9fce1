"""OpenAI chat ``messages`` -> canonical system prompt and messages.

System and developer messages, wherever they sit, fold into the one canonical system prompt.
Tool messages become tool_result blocks of a user turn; the user message that follows them
joins that same turn, since canonical (Anthropic-shaped) turns alternate.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    Block,
    ImageBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

from ._validate import (
    missing,
    required,
    type_error,
    want_enum,
    want_list,
    want_object,
    want_shallow,
    want_str,
)

ROLES = ("system", "developer", "user", "assistant", "tool")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^;,]*)*);base64,(.*)", re.DOTALL)
_UNSUPPORTED_PARTS = ("input_audio", "file")


class _Builder:
    def __init__(self) -> None:
        self.system: list[str] = []
        self.messages: list[Message] = []
        # tool_call ids of the last assistant message not yet answered by a tool message
        self.pending: dict[str, None] = {}
        # True while the last canonical message is a turn of tool results that a following
        # tool or user message may still join
        self.tool_turn_open = False

    def require_answered(self, param: str) -> None:
        if self.pending:
            ids = ", ".join(self.pending)
            raise InvalidRequest(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {ids}",
                param=param,
            )


def decode_messages(raw: Any) -> tuple[str | None, list[Message]]:
    items = want_list(raw, "messages", nonempty=True)
    b = _Builder()
    for i, item in enumerate(items):
        # Most messages of a conversation are {"role", "content": "text"}: taken as they
        # are, with the checks that can apply to them, and without building the error
        # paths ("messages[3].content") that only a bad message needs.
        if type(item) is dict and len(item) == 2 and not b.pending and not b.tool_turn_open:
            content = item.get("content")
            if type(content) is str:
                role = item.get("role")
                if role == "user" or role == "assistant":
                    b.messages.append(Message(role, [TextBlock(content)]))
                    continue
                if role == "system" or role == "developer":
                    b.system.append(content)
                    continue
        param = f"messages[{i}]"
        msg = want_object(item, param)
        role = msg.get("role")
        if role is None:
            raise missing(f"{param}.role")
        want_enum(role, f"{param}.role", ROLES)
        _HANDLERS[role](b, msg, param)
    b.require_answered("messages")
    return ("\n\n".join(b.system) if b.system else None), b.messages


def _system(b: _Builder, msg: dict, param: str) -> None:
    content = required(msg, "content", f"{param}.content")
    b.system.append(_text_only(content, f"{param}.content"))


def _user(b: _Builder, msg: dict, param: str) -> None:
    b.require_answered(f"{param}.role")
    blocks = _user_content(required(msg, "content", f"{param}.content"), f"{param}.content")
    if b.tool_turn_open:
        b.messages[-1].content.extend(blocks)
    else:
        b.messages.append(Message("user", blocks))
    b.tool_turn_open = False


def _assistant(b: _Builder, msg: dict, param: str) -> None:
    b.require_answered(f"{param}.role")
    b.tool_turn_open = False
    calls = _tool_calls(msg.get("tool_calls"), f"{param}.tool_calls")
    content = msg.get("content")
    if content is None and not calls and msg.get("refusal") is None:
        raise missing(f"{param}.content")
    text = "" if content is None else _assistant_text(content, f"{param}.content")
    blocks: list[Block] = []
    if text or (content is not None and not calls):
        blocks.append(TextBlock(text))
    blocks.extend(calls)
    b.pending = {c.id: None for c in calls}
    # A refusal-only turn carries nothing the canonical form can hold.
    if blocks:
        b.messages.append(Message("assistant", blocks))


def _tool(b: _Builder, msg: dict, param: str) -> None:
    call_id = want_str(required(msg, "tool_call_id", f"{param}.tool_call_id"), f"{param}.tool_call_id")
    if call_id not in b.pending:
        raise InvalidRequest(
            "Invalid parameter: messages with role 'tool' must be a response to a preceding "
            f"message with 'tool_calls' (no pending tool call has id {call_id!r}).",
            param=f"{param}.tool_call_id",
        )
    del b.pending[call_id]
    text = _text_only(required(msg, "content", f"{param}.content"), f"{param}.content")
    block = ToolResultBlock(call_id, [TextBlock(text)])
    if b.tool_turn_open:
        b.messages[-1].content.append(block)
    else:
        b.messages.append(Message("user", [block]))
        b.tool_turn_open = True


_HANDLERS = {
    "system": _system,
    "developer": _system,
    "user": _user,
    "assistant": _assistant,
    "tool": _tool,
}


# ---- content ---------------------------------------------------------------------------


def _parts(content: Any, param: str) -> list[dict] | None:
    """None for string content; the validated part objects for array content."""
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        raise type_error(param, "one of a string or array of objects", content)
    want_list(content, param, nonempty=True)
    parts = []
    for j, part in enumerate(content):
        part = want_object(part, f"{param}[{j}]")
        required(part, "type", f"{param}[{j}].type")
        parts.append(part)
    return parts


def _text_of(part: dict, param: str) -> str:
    return want_str(required(part, "text", f"{param}.text"), f"{param}.text")


def _text_only(content: Any, param: str) -> str:
    parts = _parts(content, param)
    if parts is None:
        return content
    texts = []
    for j, part in enumerate(parts):
        want_enum(part["type"], f"{param}[{j}].type", ("text",))
        texts.append(_text_of(part, f"{param}[{j}]"))
    return "\n".join(texts)


def _assistant_text(content: Any, param: str) -> str:
    parts = _parts(content, param)
    if parts is None:
        return content
    texts = []
    for j, part in enumerate(parts):
        kind = want_enum(part["type"], f"{param}[{j}].type", ("text", "refusal"))
        if kind == "text":
            texts.append(_text_of(part, f"{param}[{j}]"))
    return "".join(texts)


def _user_content(content: Any, param: str) -> list[Block]:
    parts = _parts(content, param)
    if parts is None:
        return [TextBlock(content)]
    blocks: list[Block] = []
    for j, part in enumerate(parts):
        p = f"{param}[{j}]"
        kind = part["type"]
        if kind in _UNSUPPORTED_PARTS:
            raise InvalidRequest(f"Content parts of type '{kind}' are not supported.", param=f"{p}.type")
        want_enum(kind, f"{p}.type", ("text", "image_url", *_UNSUPPORTED_PARTS))
        blocks.append(TextBlock(_text_of(part, p)) if kind == "text" else _image(part, p))
    return blocks


def _image(part: dict, param: str) -> ImageBlock:
    spec = want_object(required(part, "image_url", f"{param}.image_url"), f"{param}.image_url")
    url = want_str(required(spec, "url", f"{param}.image_url.url"), f"{param}.image_url.url")
    detail = spec.get("detail")
    if detail is not None:
        want_enum(detail, f"{param}.image_url.detail", ("auto", "low", "high"))
    if url.startswith(("http://", "https://")):
        return ImageBlock(url=url, detail=detail)
    m = _DATA_URL.fullmatch(url)
    if m is None or not m.group(3) or not m.group(1).startswith("image/"):
        raise InvalidRequest(
            "Invalid image URL: expected an http(s) URL or a base64 data URL "
            "('data:image/<type>;base64,...').",
            param=f"{param}.image_url.url",
        )
    return ImageBlock(media_type=m.group(1), data=m.group(3), detail=detail)


def _tool_calls(raw: Any, param: str) -> list[ToolUseBlock]:
    if raw is None:
        return []
    calls = []
    for k, call in enumerate(want_list(raw, param)):
        p = f"{param}[{k}]"
        call = want_object(call, p)
        call_id = want_str(required(call, "id", f"{p}.id"), f"{p}.id", nonempty=True)
        want_enum(call.get("type", "function"), f"{p}.type", ("function",))
        fn = want_object(required(call, "function", f"{p}.function"), f"{p}.function")
        name = want_str(required(fn, "name", f"{p}.function.name"), f"{p}.function.name", nonempty=True)
        args = want_str(required(fn, "arguments", f"{p}.function.arguments"), f"{p}.function.arguments")
        calls.append(ToolUseBlock(call_id, name, parse_arguments(args, f"{p}.function.arguments")))
    return calls


def parse_arguments(text: str, param: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"Invalid '{param}': not valid JSON.", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid '{param}': expected a JSON object.", param=param)
    return want_shallow(value, param)
