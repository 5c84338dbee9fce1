"""Messages API responses: upstream JSON -> canonical ``Response`` and back to client JSON."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import UpstreamError
from modelmart.core.types import (
    Block, Response, TextBlock, ThinkingBlock, ToolUseBlock, Usage,
)
from modelmart.dialects._checks import wire_str

STOP_FROM_WIRE = {
    "end_turn": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
    "tool_use": "tool_use", "refusal": "content_filter",
    # A paused server-tool turn is a finished turn for a client without server tools.
    "pause_turn": "end_turn",
    "model_context_window_exceeded": "max_tokens",
}
STOP_TO_WIRE = {
    "end_turn": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
    "tool_use": "tool_use", "content_filter": "refusal", "error": "end_turn",
}


def malformed(what: str) -> UpstreamError:
    return UpstreamError(f"malformed reply from the Anthropic upstream: {what}")


def decode_response(data: Any) -> Response:
    if not isinstance(data, dict) or data.get("type") != "message":
        raise malformed("expected an object with type 'message'")
    content = data.get("content")
    if not isinstance(content, list):
        raise malformed("content is not an array")
    blocks = [b for b in (decode_block(raw) for raw in content) if b is not None]
    return Response(
        id=_text_field(data, "id"),
        model=_text_field(data, "model"),
        content=blocks,
        stop_reason=decode_stop(data.get("stop_reason")),
        stop_sequence=_optionalwire_str(data.get("stop_sequence")),
        usage=decode_usage(data.get("usage")),
    )


def _text_field(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise malformed(f"{key} is not a string")
    return value


def _optionalwire_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def decode_block(raw: Any) -> Block | None:
    """A response content block; blocks only server tools produce are skipped."""
    if not isinstance(raw, dict):
        raise malformed("a content block is not an object")
    kind = raw.get("type")
    try:
        if kind == "text":
            return TextBlock(wire_str(raw["text"]))
        if kind == "tool_use":
            if not isinstance(raw["input"], dict):
                raise TypeError
            return ToolUseBlock(id=wire_str(raw["id"]), name=wire_str(raw["name"]), input=raw["input"])
        if kind == "thinking":
            return ThinkingBlock(wire_str(raw["thinking"]), raw.get("signature"))
    except (KeyError, TypeError):
        raise malformed(f"bad {kind} block") from None
    return None


def decode_stop(value: Any) -> str:
    return STOP_FROM_WIRE.get(value, "end_turn")


def decode_usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    if not isinstance(raw, dict):
        raise malformed("usage is not an object")
    usage = Usage()
    update_usage(usage, raw)
    return usage


def update_usage(usage: Usage, raw: dict) -> None:
    """Overwrite with the counts ``raw`` carries: Anthropic's counts are running totals, and
    a ``message_delta`` leaves out the ones it does not restate."""
    try:
        for wire, attr in _USAGE_FIELDS:
            if raw.get(wire) is not None:
                setattr(usage, attr, int(raw[wire]))
        details = raw.get("output_tokens_details")
        if isinstance(details, dict) and details.get("thinking_tokens") is not None:
            usage.reasoning_tokens = int(details["thinking_tokens"])
    except (TypeError, ValueError):
        raise malformed("usage counts are not integers") from None


_USAGE_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_creation_input_tokens", "cache_write_tokens"),
    ("cache_read_input_tokens", "cache_read_tokens"),
)


# ---- canonical -> wire ------------------------------------------------------------------


def encode_response(resp: Response, model: str) -> dict:
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [b for b in (encode_block(block) for block in resp.content) if b],
        "stop_reason": STOP_TO_WIRE.get(resp.stop_reason, "end_turn"),
        "stop_sequence": resp.stop_sequence,
        "usage": encode_usage(resp.usage),
    }


def encode_block(block: Block) -> dict | None:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ThinkingBlock):
        return {"type": "thinking", "thinking": block.text, "signature": block.signature or ""}
    return None  # images and tool results never appear in an assistant reply


def encode_usage(usage: Usage) -> dict:
    out = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out
