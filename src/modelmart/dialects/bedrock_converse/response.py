"""Converse responses: upstream JSON -> canonical ``Response`` and back to client JSON.

A Converse response names neither the message nor the model, so ``decode_response`` takes
the model from the caller and makes up an id; ``encode_response`` leaves ``resp.id`` for
the surface to send as a header (``x-amzn-RequestId``).
"""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import UpstreamError
from modelmart.core.ids import new_id
from modelmart.core.types import Block, Response, TextBlock, ThinkingBlock, ToolUseBlock, Usage
from modelmart.dialects._checks import wire_str

from .blocks import encode_block

STOP_FROM_WIRE = {
    "end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter", "model_context_window_exceeded": "max_tokens",
    "malformed_model_output": "error", "malformed_tool_use": "error",
}
STOP_TO_WIRE = {
    "end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence", "content_filter": "content_filtered",
    "error": "malformed_model_output",
}
_USAGE_FIELDS = (
    ("inputTokens", "input_tokens"), ("outputTokens", "output_tokens"),
    ("cacheReadInputTokens", "cache_read_tokens"),
    ("cacheWriteInputTokens", "cache_write_tokens"),
)


def malformed(what: str) -> UpstreamError:
    return UpstreamError(f"malformed reply from the Bedrock upstream: {what}")


def decode_response(data: Any, model: str = "") -> Response:
    if not isinstance(data, dict):
        raise malformed("the body is not an object")
    output = data.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise malformed("output.message.content is not an array")
    extra = data.get("additionalModelResponseFields")
    stop_sequence = extra.get("stop_sequence") if isinstance(extra, dict) else None
    return Response(
        id=new_id("msg_"),
        model=model,
        content=[b for b in (decode_block(raw) for raw in message["content"]) if b],
        stop_reason=decode_stop(data.get("stopReason")),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=decode_usage(data.get("usage")),
    )


def decode_block(raw: Any) -> Block | None:
    """A response content block; kinds canonical has no place for are skipped."""
    if not isinstance(raw, dict):
        raise malformed("a content block is not an object")
    try:
        if "text" in raw:
            return TextBlock(wire_str(raw["text"]))
        if "toolUse" in raw:
            use = raw["toolUse"]
            if not isinstance(use["input"], dict):
                raise TypeError
            return ToolUseBlock(id=wire_str(use["toolUseId"]), name=wire_str(use["name"]),
                                input=use["input"])
        if "reasoningContent" in raw:
            text = raw["reasoningContent"].get("reasoningText")
            if text is None:
                return None  # redacted reasoning
            return ThinkingBlock(wire_str(text["text"]), text.get("signature"))
        if "citationsContent" in raw:
            parts = raw["citationsContent"].get("content") or []
            return TextBlock("".join(wire_str(p["text"]) for p in parts if "text" in p))
    except (KeyError, TypeError, AttributeError):
        raise malformed(f"bad {next(iter(raw), 'empty')} block") from None
    return None


def decode_stop(value: Any) -> str:
    return STOP_FROM_WIRE.get(value, "end_turn")


def decode_usage(raw: Any) -> Usage:
    """Bedrock counts like Anthropic: inputTokens is the uncached input, cache reads and
    writes apart, and totalTokens their sum with the output (so it is not read)."""
    if raw is None:
        return Usage()
    if not isinstance(raw, dict):
        raise malformed("usage is not an object")
    usage = Usage()
    try:
        for wire, attr in _USAGE_FIELDS:
            if raw.get(wire) is not None:
                setattr(usage, attr, int(raw[wire]))
    except (TypeError, ValueError):
        raise malformed("usage counts are not integers") from None
    return usage


# ---- canonical -> wire ------------------------------------------------------------------


def encode_response(resp: Response, model: str, *, latency_ms: int = 0) -> dict:
    """The Converse body. ``metrics.latencyMs`` is required by the API; the surface passes
    the time it measured."""
    content = [b for b in (encode_block(block) for block in resp.content) if b is not None]
    out: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": STOP_TO_WIRE.get(resp.stop_reason, "end_turn"),
        "usage": encode_usage(resp.usage),
        "metrics": {"latencyMs": int(latency_ms)},
    }
    if resp.stop_sequence:
        out["additionalModelResponseFields"] = {"stop_sequence": resp.stop_sequence}
    return out


def encode_usage(usage: Usage) -> dict:
    return {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.total_input_tokens + usage.output_tokens,
        "cacheReadInputTokens": usage.cache_read_tokens,
        "cacheWriteInputTokens": usage.cache_write_tokens,
    }
