"""Responses API ``input`` (a string, or a list of items) -> canonical system prompt and
messages. Items are messages, ``function_call``, ``function_call_output`` and
``reasoning``; consecutive items of one side join one canonical turn, since canonical
turns alternate. We keep no conversation state, so an ``item_reference`` cannot be
resolved and is refused."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    Block, Message, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock,
)
from modelmart.dialects._checks import shown
from modelmart.dialects.openai_chat._validate import (
    required, type_error, want_enum, want_list, want_object, want_str,
)
from modelmart.dialects.openai_chat.messages_in import parse_arguments

from .images import decode_image

_ROLES = ("user", "assistant", "system", "developer")


class _Builder:
    def __init__(self) -> None:
        self.system: list[str] = []
        self.messages: list[Message] = []
        self.calls: set[str] = set()  # call_ids of function_call items seen so far

    def add(self, role: str, blocks: list[Block]) -> None:
        if not blocks:
            return
        if self.messages and self.messages[-1].role == role:
            self.messages[-1].content.extend(blocks)
        else:
            self.messages.append(Message(role, blocks))  # type: ignore[arg-type]


def decode_input(raw: Any) -> tuple[str | None, list[Message]]:
    if isinstance(raw, str):
        return None, [Message("user", [TextBlock(raw)])]
    if not isinstance(raw, list):
        raise type_error("input", "a string or an array of input items", raw)
    want_list(raw, "input", nonempty=True)
    b = _Builder()
    for i, item in enumerate(raw):
        p = f"input[{i}]"
        item = want_object(item, p)
        kind = item.get("type", "message")  # EasyInputMessage has no type
        handler = _HANDLERS.get(kind) if type(kind) is str else None
        if handler is None:
            raise InvalidRequest(f"Input items of type {shown(kind)} are not supported.",
                                 param=f"{p}.type")
        handler(b, item, p)
    if not b.messages:
        raise InvalidRequest("'input' has no user or assistant content.", param="input")
    return ("\n\n".join(b.system) if b.system else None), b.messages


def _message(b: _Builder, item: dict, p: str) -> None:
    role = want_enum(required(item, "role", f"{p}.role"), f"{p}.role", _ROLES)
    content = required(item, "content", f"{p}.content")
    if role in ("system", "developer"):
        b.system.append("\n".join(t.text for t in _parts(content, p, ("input_text",))))
    elif role == "assistant":
        b.add("assistant", _parts(content, p, ("output_text", "input_text", "refusal")))
    else:
        b.add("user", _parts(content, p, ("input_text", "input_image")))


def _parts(content: Any, p: str, allowed: tuple[str, ...]) -> list:
    if isinstance(content, str):
        return [TextBlock(content)]
    blocks: list = []
    for j, part in enumerate(want_list(content, f"{p}.content")):
        pp = f"{p}.content[{j}]"
        part = want_object(part, pp)
        kind = required(part, "type", f"{pp}.type")
        if kind not in allowed and kind in ("input_file", "input_audio"):
            raise InvalidRequest(f"Content parts of type '{kind}' are not supported.", param=f"{pp}.type")
        want_enum(kind, f"{pp}.type", allowed)
        if kind == "input_image":
            blocks.append(decode_image(part, pp))
        elif kind != "refusal":  # a refusal carries nothing the canonical form can hold
            blocks.append(TextBlock(want_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
    return blocks


def _function_call(b: _Builder, item: dict, p: str) -> None:
    call_id = want_str(required(item, "call_id", f"{p}.call_id"), f"{p}.call_id", nonempty=True)
    name = want_str(required(item, "name", f"{p}.name"), f"{p}.name", nonempty=True)
    args = want_str(required(item, "arguments", f"{p}.arguments"), f"{p}.arguments")
    b.calls.add(call_id)
    b.add("assistant", [ToolUseBlock(call_id, name, parse_arguments(args, f"{p}.arguments"))])


def _function_call_output(b: _Builder, item: dict, p: str) -> None:
    call_id = want_str(required(item, "call_id", f"{p}.call_id"), f"{p}.call_id", nonempty=True)
    if call_id not in b.calls:
        raise InvalidRequest(f"No tool call found for function call output with call_id {call_id}.",
                             param=f"{p}.call_id")
    output = required(item, "output", f"{p}.output")
    content = _parts(output, p, ("input_text", "input_image")) if not isinstance(output, str) \
        else [TextBlock(output)]
    b.add("user", [ToolResultBlock(call_id, content)])


def _reasoning(b: _Builder, item: dict, p: str) -> None:
    # Clients replay our reasoning items; the signature (Anthropic's, Gemini's) rides in
    # encrypted_content and must go back to the upstream that issued it.
    texts = _reasoning_texts(item.get("content"), f"{p}.content")
    if not texts:
        texts = _reasoning_texts(item.get("summary"), f"{p}.summary")
    signature = item.get("encrypted_content")
    if signature is not None:
        want_str(signature, f"{p}.encrypted_content")
    block = ThinkingBlock("".join(texts), signature=signature)
    if block.text or block.signature:
        b.add("assistant", [block])


def _reasoning_texts(parts: Any, p: str) -> list[str]:
    """The texts of a reasoning item's ``content`` or ``summary``: arrays of objects."""
    if parts is None:
        return []
    texts = []
    for j, part in enumerate(want_list(parts, p)):
        text = want_object(part, f"{p}[{j}]").get("text")
        if text is not None:
            texts.append(want_str(text, f"{p}[{j}].text"))
    return texts


_HANDLERS = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _reasoning,
}
