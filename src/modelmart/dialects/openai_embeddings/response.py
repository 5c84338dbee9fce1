"""Embeddings responses: ``encode_response`` (to clients) and ``decode_response`` (from
upstreams). With ``encoding_format: base64`` each vector is the base64 text of its
little-endian float32 values, as api.openai.com sends it (and the openai SDK asks for it by
default)."""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

from modelmart.core.embeddings import EmbeddingResponse
from modelmart.core.errors import UpstreamError


def pack_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def unpack_base64(text: str) -> list[float]:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def encode_response(resp: EmbeddingResponse, model: str, *,
                    encoding_format: str = "float") -> dict[str, Any]:
    pack = pack_base64 if encoding_format == "base64" else list
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": pack(vector)}
                 for i, vector in enumerate(resp.vectors)],
        "model": model,
        "usage": {"prompt_tokens": resp.input_tokens, "total_tokens": resp.input_tokens},
    }


def decode_response(data: Any) -> EmbeddingResponse:
    """An upstream's reply; ``estimated`` (with 0 tokens) when it reported no usage, for the
    caller to estimate."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise _malformed("no 'data' array")
    items = data["data"]
    vectors: list[list[float] | None] = [None] * len(items)
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise _malformed(f"data[{n}] is not an object")
        index = item.get("index", n)
        if not isinstance(index, int) or not 0 <= index < len(items) or vectors[index] is not None:
            raise _malformed(f"data[{n}].index {index!r} is missing, repeated or out of range")
        vectors[index] = _vector(item.get("embedding"), n)
    usage = data.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    reported = isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0
    return EmbeddingResponse(model=str(data.get("model") or ""),
                             vectors=vectors,  # type: ignore[arg-type]  (all filled above)
                             input_tokens=tokens if reported else 0, estimated=not reported)


def _vector(raw: Any, n: int) -> list[float]:
    if isinstance(raw, str):
        try:
            return unpack_base64(raw)
        except (binascii.Error, ValueError) as exc:
            raise _malformed(f"data[{n}].embedding is not base64 float32: {exc}") from None
    if isinstance(raw, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                     for x in raw):
        return [float(x) for x in raw]
    raise _malformed(f"data[{n}].embedding is neither an array of numbers nor base64")


def _malformed(why: str) -> UpstreamError:
    return UpstreamError(f"malformed embeddings reply from the upstream: {why}")
