"""Finish reasons and ``usageMetadata``, shared by whole responses and stream chunks.

``promptTokenCount`` includes cached tokens, so canonical ``input_tokens`` is prompt minus
cached. Thinking tokens (``thoughtsTokenCount``) are billed as output by Google but are not
in ``candidatesTokenCount``: canonical output is candidates plus thoughts.
"""

from __future__ import annotations

from typing import Any

from modelmart.core.types import StopReason, Usage

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE",
             "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR")
_ERRORS = ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "MALFORMED_RESPONSE",
           "TOO_MANY_TOOL_CALLS", "MISSING_THOUGHT_SIGNATURE")
_FINISH_FROM_STOP = {
    "end_turn": "STOP", "stop_sequence": "STOP", "tool_use": "STOP",
    "max_tokens": "MAX_TOKENS", "content_filter": "SAFETY", "error": "OTHER",
}


def stop_reason(finish: Any, has_tool_calls: bool) -> StopReason:
    # Gemini ends a turn of function calls with STOP; the calls are what make it tool_use.
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in _FILTERED:
        return "content_filter"
    if finish in _ERRORS:
        return "error"
    return "tool_use" if has_tool_calls else "end_turn"


def finish_reason(reason: str) -> str:
    return _FINISH_FROM_STOP.get(reason, "STOP")


def _count(raw: dict, key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def decode_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    cached = _count(raw, "cachedContentTokenCount")
    thoughts = _count(raw, "thoughtsTokenCount")
    # Prompt tokens spent on built-in tool results are input too.
    prompt = _count(raw, "promptTokenCount") + _count(raw, "toolUsePromptTokenCount")
    return Usage(
        input_tokens=max(0, prompt - cached),
        output_tokens=_count(raw, "candidatesTokenCount") + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    prompt = usage.total_input_tokens
    candidates = max(0, usage.output_tokens - usage.reasoning_tokens)
    out: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                           "totalTokenCount": prompt + usage.output_tokens}
    if usage.cache_read_tokens:
        out["cachedContentTokenCount"] = usage.cache_read_tokens
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    return out
