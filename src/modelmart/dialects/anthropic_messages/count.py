"""Token counting (``POST /v1/messages/count_tokens``): the request is a Messages request
without ``max_tokens``; the answer is ``{"input_tokens": N}``."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest, UpstreamError
from modelmart.core.types import Request

from .request import decode_request


def decode_count_request(data: Any) -> Request:
    if isinstance(data, dict) and "max_tokens" not in data:
        data = {**data, "max_tokens": 1}  # not part of a count; the decoder requires it
    req = decode_request(data)
    if req.stream:
        raise InvalidRequest("stream: not a field of a token count", param="stream")
    return req


def encode_token_count(tokens: int) -> dict:
    return {"input_tokens": tokens}


def decode_token_count(data: Any) -> int:
    tokens = data.get("input_tokens") if isinstance(data, dict) else None
    if type(tokens) is not int or tokens < 0:
        raise UpstreamError("the upstream's token count has no input_tokens number")
    return tokens
