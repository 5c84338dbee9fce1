"""Whole (non-streamed) chat completions: ``decode_response`` from upstreams and
``encode_response`` to clients."""

from __future__ import annotations

import time
from typing import Any

from modelmart.core.errors import InvalidRequest, UpstreamError
from modelmart.core.types import Block, Response, TextBlock, ThinkingBlock, ToolUseBlock

from .messages_in import parse_arguments
from .messages_out import tool_call
from .usage import decode_usage, encode_usage, finish_reason, stop_reason


def decode_response(data: Any) -> Response:
    message, choice = _first_message(data)
    calls = _tool_calls(message.get("tool_calls"))
    content: list[Block] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append(ThinkingBlock(reasoning))
    text = _text(message.get("content"))
    if text:
        content.append(TextBlock(text))
    content.extend(calls)
    return Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=content,
        stop_reason=stop_reason(choice.get("finish_reason"), bool(calls)),
        usage=decode_usage(data.get("usage")),
        created=data["created"] if isinstance(data.get("created"), int) else 0,
        logprobs=choice.get("logprobs") if isinstance(choice.get("logprobs"), dict) else None,
    )


def _first_message(data: Any) -> tuple[dict, dict]:
    if not isinstance(data, dict):
        raise UpstreamError("upstream reply is not a JSON object")
    if isinstance(data.get("error"), (dict, str)) and "choices" not in data:
        err = data["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        raise UpstreamError(f"upstream returned an error: {msg}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("upstream reply is not a chat completion (no choices)")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise UpstreamError("upstream reply is not a chat completion (choice has no message)")
    return message, choices[0]


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # a few compatible hosts answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise UpstreamError("upstream reply has a message content that is not text")


def _tool_calls(raw: Any) -> list[ToolUseBlock]:
    if not raw:
        return []
    if not isinstance(raw, list):
        raise UpstreamError("upstream reply has tool_calls that are not a list")
    calls = []
    for call in raw:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UpstreamError("upstream reply has a malformed tool call")
        calls.append(ToolUseBlock(str(call.get("id") or ""), fn["name"], _arguments(fn)))
    return calls


def _arguments(fn: dict) -> dict[str, Any]:
    args = fn.get("arguments")
    if isinstance(args, dict):  # some hosts send the object itself
        return args
    try:
        return parse_arguments(args if isinstance(args, str) else "", "arguments")
    except InvalidRequest:
        raise UpstreamError(
            f"upstream model produced tool call arguments that are not a JSON object: {args!r:.200}"
        ) from None


# ---- encode ----------------------------------------------------------------------------


def encode_response(resp: Response, model: str) -> dict[str, Any]:
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": _message(resp),
                "finish_reason": finish_reason(resp.stop_reason),
                "logprobs": resp.logprobs,
            }
        ],
        "usage": encode_usage(resp.usage),
        "system_fingerprint": None,
    }


def _message(resp: Response) -> dict[str, Any]:
    texts = [b.text for b in resp.content if isinstance(b, TextBlock)]
    thinking = [b.text for b in resp.content if isinstance(b, ThinkingBlock)]
    calls = [b for b in resp.content if isinstance(b, ToolUseBlock)]
    text = "".join(texts)
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        msg["tool_calls"] = [tool_call(c) for c in calls]
    if thinking:
        # The field DeepSeek, vLLM and other compatible hosts use for reasoning text.
        msg["reasoning_content"] = "".join(thinking)
    return msg

