"""``CountTokens`` (``POST /model/{modelId}/count-tokens``) over a Converse request:
``{"input": {"converse": {messages, system, toolConfig}}}`` in, ``{"inputTokens": N}`` out."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import UpstreamError
from modelmart.core.types import Request

from .request import encode_request

_COUNTED = ("messages", "system", "toolConfig")


def encode_count_tokens(req: Request, model: str) -> dict:
    body = encode_request(req, model)
    return {"input": {"converse": {k: body[k] for k in _COUNTED if k in body}}}


def decode_token_count(data: Any) -> int:
    tokens = data.get("inputTokens") if isinstance(data, dict) else None
    if type(tokens) is not int or tokens < 0:
        raise UpstreamError("the upstream's token count has no inputTokens number")
    return tokens
