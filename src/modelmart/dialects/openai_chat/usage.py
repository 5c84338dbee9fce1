"""Finish reasons and usage, shared by whole responses and stream chunks.

OpenAI's ``prompt_tokens`` counts every input token, cached or not; canonical
``input_tokens`` counts only uncached ones, so cache reads and writes are taken out of it.
"""

from __future__ import annotations

from typing import Any

from modelmart.core.types import StopReason, Usage

_STOP_FROM_FINISH: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}
_FINISH_FROM_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "error": "stop",
}


def stop_reason(finish_reason: Any, has_tool_calls: bool = False) -> StopReason:
    reason = _STOP_FROM_FINISH.get(finish_reason, "end_turn")
    # Some compatible hosts report "stop" even when the turn ends in tool calls.
    if reason == "end_turn" and has_tool_calls:
        return "tool_use"
    return reason


def finish_reason(reason: str) -> str:
    return _FINISH_FROM_STOP.get(reason, "stop")


def _count(obj: Any, key: str) -> int:
    if not isinstance(obj, dict):
        return 0
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def decode_usage(raw: Any) -> Usage:
    prompt_details = raw.get("prompt_tokens_details") if isinstance(raw, dict) else None
    completion_details = raw.get("completion_tokens_details") if isinstance(raw, dict) else None
    cached = _count(prompt_details, "cached_tokens")
    written = _count(prompt_details, "cache_write_tokens")
    return Usage(
        input_tokens=max(0, _count(raw, "prompt_tokens") - cached - written),
        output_tokens=_count(raw, "completion_tokens"),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=_count(completion_details, "reasoning_tokens"),
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    prompt = usage.total_input_tokens
    details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
