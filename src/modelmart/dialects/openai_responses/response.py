"""Whole ``response`` objects for clients: canonical blocks become output items (text ->
``message``, tool call -> ``function_call``, thinking -> ``reasoning``)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.core.ids import new_id
from modelmart.core.types import Block, Request, Response, TextBlock, ThinkingBlock, ToolUseBlock, Usage

from .tools import echo_fields

# canonical stop reason -> incomplete_details.reason; any other stop completes the response
INCOMPLETE = {"max_tokens": "max_output_tokens", "content_filter": "content_filter"}


def encode_response(resp: Response, model: str, *, request: Request | None = None) -> dict[str, Any]:
    """``request`` (the decoded client request) fills the settings a response echoes
    (tools, tool_choice, instructions, metadata ...); without it they are the defaults."""
    reason = INCOMPLETE.get(resp.stop_reason)
    status = "incomplete" if reason else "completed"
    output = [output_item(b, "incomplete" if reason and isinstance(b, TextBlock) else "completed")
              for b in resp.content]
    return response_object(resp.id, resp.created or int(time.time()), model, status, output,
                           resp.usage, request, reason)


def response_object(rid: str, created: int, model: str, status: str, output: list[dict],
                    usage: Usage | None, request: Request | None,
                    incomplete_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": model,
        "output": output,
        **echo_fields(request),
        "usage": encode_usage(usage) if usage is not None else None,
    }


def output_item(block: Block, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return message_item(item_id or new_id("msg_"), block.text, status)
    if isinstance(block, ToolUseBlock):
        return call_item(item_id or new_id("fc_"), block, orjson.dumps(block.input).decode(), status)
    if isinstance(block, ThinkingBlock):
        return reasoning_item(item_id or new_id("rs_"), block.text, block.signature)
    raise InvalidRequest(f"a response cannot carry a {block.type} block")


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [text_part(text)]
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def call_item(item_id: str, block: ToolUseBlock, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": block.id, "name": block.name,
            "arguments": arguments, "status": status}


def reasoning_item(item_id: str, text: str | None, signature: str | None) -> dict[str, Any]:
    # Raw thinking goes in content as reasoning_text; a provider's signature rides in
    # encrypted_content, which clients hand back verbatim (see items.py).
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
    if text:
        item["content"] = [{"type": "reasoning_text", "text": text}]
    if signature:
        item["encrypted_content"] = signature
    return item


def encode_usage(usage: Usage) -> dict[str, Any]:
    total_in = usage.total_input_tokens
    return {
        "input_tokens": total_in,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens,
                                 "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": total_in + usage.output_tokens,
    }


def decode_response(data: Any) -> Response:
    raise InvalidRequest("The OpenAI Responses API is not supported as an upstream yet.")
