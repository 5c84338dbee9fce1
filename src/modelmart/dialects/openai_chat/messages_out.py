"""Canonical system prompt and messages -> OpenAI chat ``messages`` for an upstream."""

from __future__ import annotations

from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    DocumentBlock, ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock,
)


def encode_messages(system: str | None, messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for msg in messages:
        content = msg.content
        if len(content) == 1 and type(content[0]) is TextBlock:  # most turns: one text
            out.append({"role": "assistant" if msg.role == "assistant" else "user",
                        "content": content[0].text})
            continue
        if msg.role == "assistant":
            out.extend(_assistant(msg))
        else:
            out.extend(_user(msg))
    return out


def image_part(img: ImageBlock) -> dict[str, Any]:
    url = img.url if img.url else f"data:{img.media_type or 'image/png'};base64,{img.data}"
    spec: dict[str, Any] = {"url": url}
    if img.detail:
        spec["detail"] = img.detail
    return {"type": "image_url", "image_url": spec}


def _user(msg: Message) -> list[dict[str, Any]]:
    # OpenAI wants every tool result directly after the assistant's tool_calls, so they go
    # first; images inside tool results cannot ride in a tool message and join the user part.
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in msg.content:
        if isinstance(block, ToolResultBlock):
            out.append(_tool_message(block))
            parts.extend(image_part(c) for c in block.content if isinstance(c, ImageBlock))
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(image_part(block))
        elif isinstance(block, DocumentBlock):
            parts.append(document_part(block))
    if parts:
        out.append({"role": "user", "content": _compact(parts)})
    return out


def document_part(doc: DocumentBlock) -> dict[str, Any]:
    """A text document as text: OpenAI-compatible hosts have no document blocks. A file
    (PDF) cannot be sent; routing keeps such requests from these deployments."""
    if doc.data is not None:
        raise InvalidRequest(f"this deployment cannot read {doc.media_type} documents; use a "
                             f"model served by Anthropic, Bedrock or Gemini", param="messages")
    return {"type": "text", "text": doc.as_text()}


def _compact(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _tool_message(block: ToolResultBlock) -> dict[str, Any]:
    text = "\n".join(c.text for c in block.content if isinstance(c, TextBlock))
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _assistant(msg: Message) -> list[dict[str, Any]]:
    # Thinking blocks are dropped: OpenAI upstreams neither accept nor need them back.
    texts = [b.text for b in msg.content if isinstance(b, TextBlock)]
    calls = [tool_call(b) for b in msg.content if isinstance(b, ToolUseBlock)]
    if not texts and not calls:
        return []
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    return [out]


def tool_call(block: ToolUseBlock) -> dict[str, Any]:
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": orjson.dumps(block.input).decode()},
    }
