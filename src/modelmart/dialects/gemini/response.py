"""Whole ``GenerateContentResponse`` bodies: ``decode_response`` from upstreams and
``encode_response`` to clients."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest, UpstreamError
from modelmart.core.types import Block, Response, TextBlock, ThinkingBlock, ToolUseBlock

from .parts import decode_call, model_parts
from .usage import decode_usage, encode_usage, finish_reason, stop_reason


def decode_response(data: Any) -> Response:
    if not isinstance(data, dict):
        raise UpstreamError("upstream reply is not a JSON object")
    if isinstance(data.get("error"), dict):
        raise UpstreamError(f"upstream returned an error: {data['error'].get('message')}")
    candidate = first_candidate(data)
    content = candidate_blocks(candidate)
    return Response(
        id=str(data.get("responseId") or ""),
        model=str(data.get("modelVersion") or ""),
        content=content,
        stop_reason=_stop(data, candidate, content),
        usage=decode_usage(data.get("usageMetadata")),
    )


def first_candidate(data: dict) -> dict | None:
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    if blocked(data):
        return None
    raise UpstreamError("upstream reply is not a GenerateContentResponse (no candidates)")


def blocked(data: dict) -> bool:
    """A prompt Google refused to answer: no candidates, a ``promptFeedback.blockReason``."""
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _stop(data: dict, candidate: dict | None, content: list[Block]) -> str:
    if candidate is None:
        return "content_filter"
    return stop_reason(candidate.get("finishReason"),
                       any(isinstance(b, ToolUseBlock) for b in content))


def candidate_blocks(candidate: dict | None) -> list[Block]:
    content = (candidate or {}).get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    blocks: list[Block] = []
    for part in parts or ():
        if isinstance(part, dict):
            blocks.extend(part_blocks(part))
    return blocks


def part_blocks(part: dict) -> list[Block]:
    """One model part -> blocks; parts we cannot carry (code execution) are skipped."""
    signature = part.get("thoughtSignature")
    if isinstance(part.get("functionCall"), dict):
        try:
            call = decode_call(part["functionCall"], "functionCall")
        except InvalidRequest as exc:
            raise UpstreamError(f"upstream sent a malformed function call: {exc.message}") from None
        return ([ThinkingBlock("", signature=signature)] if signature else []) + [call]
    text = part.get("text")
    if isinstance(text, str):
        if part.get("thought"):
            return [ThinkingBlock(text, signature=signature or None)]
        return [TextBlock(text)] if text else []
    return []


# ---- encode ----------------------------------------------------------------------------


def encode_response(resp: Response, model: str) -> dict[str, Any]:
    parts = response_parts(resp.content)
    return {
        "candidates": [{
            "content": {"role": "model", "parts": parts or [{"text": ""}]},
            "finishReason": finish_reason(resp.stop_reason),
            "index": 0,
        }],
        "usageMetadata": encode_usage(resp.usage),
        "modelVersion": model,
        "responseId": resp.id,
    }


def response_parts(blocks: list[Block]) -> list[dict[str, Any]]:
    thoughts = [{"text": b.text, "thought": True} for b in blocks
                if isinstance(b, ThinkingBlock) and b.text]
    return thoughts + model_parts(blocks, placeholder=False)
