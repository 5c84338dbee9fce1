"""Embeddings request bodies: ``decode_request`` (from clients) and ``encode_request`` (to
OpenAI and OpenAI-compatible upstreams)."""

from __future__ import annotations

from typing import Any, Iterable

from modelmart.core.embeddings import EmbeddingRequest
from modelmart.core.errors import InvalidRequest
from modelmart.dialects.openai_chat._validate import (
    is_int,
    missing,
    type_error,
    want_enum,
    want_int,
    want_list,
    want_model,
    want_shallow_fields,
    want_str,
)

# OpenAI's own limit on the number of inputs in one request.
MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")

# Fields decoded into canonical ones; everything else goes to ``extra`` untouched.
_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def decode_request(data: Any) -> EmbeddingRequest:
    model = want_model(data)
    fmt = data.get("encoding_format")
    dimensions = data.get("dimensions")
    user = data.get("user")
    inputs, token_ids = _inputs(data.get("input"))
    return EmbeddingRequest(
        model=model,
        inputs=inputs,
        token_ids=token_ids,
        dimensions=None if dimensions is None else want_int(dimensions, "dimensions", 1),
        encoding_format="float" if fmt is None else want_enum(fmt, "encoding_format", ENCODINGS),
        user=None if user is None else want_str(user, "user"),
        extra=want_shallow_fields({k: v for k, v in data.items() if k not in _KNOWN}),
    )


def _inputs(raw: Any) -> tuple[list, bool]:
    """(the inputs, whether they are token-id lists): a string, an array of strings, an
    array of token ids (one input), or an array of such arrays."""
    if raw is None:
        raise missing("input")
    if isinstance(raw, str):
        return [_text(raw, "input")], False
    items = want_list(raw, "input", nonempty=True)
    if all(is_int(t) for t in items):
        return [_token_ids(items, "input")], True
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(
            f"Invalid 'input': {len(items)} inputs; at most {MAX_INPUTS} are allowed in one "
            "request.", param="input")
    if isinstance(items[0], list):
        return [_token_ids(t, f"input[{i}]") for i, t in enumerate(items)], True
    return [_text(t, f"input[{i}]") for i, t in enumerate(items)], False


def _token_ids(value: Any, param: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"Invalid '{param}': expected a non-empty array of token ids "
                             "(all inputs of a request are texts, or all token arrays).",
                             param="input")
    if not all(is_int(t) and t >= 0 for t in value):
        raise InvalidRequest(f"Invalid '{param}': token ids are whole numbers of 0 or more.",
                             param="input")
    return value


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    if not value:
        raise InvalidRequest(f"Invalid '{param}': empty string. An input to embed must not be "
                             "empty.", param="input")
    return value


def encode_request(req: EmbeddingRequest, model: str, *,
                   drop: Iterable[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = dict(req.extra)
    out["model"] = model
    out["input"] = list(req.inputs)
    out["encoding_format"] = req.encoding_format
    if req.dimensions is not None:
        out["dimensions"] = req.dimensions
    if req.user is not None:
        out["user"] = req.user
    for key in drop:
        out.pop(key, None)
    return out
