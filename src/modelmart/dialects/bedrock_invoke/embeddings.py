"""Embeddings bodies of InvokeModel, both directions (clients send them; a Bedrock
embeddings deployment is sent them):

- Titan Text Embeddings (``amazon.titan-embed-text-v1``/``v2``): ``{"inputText",
  "dimensions", "normalize", "embeddingTypes"}`` -> ``{"embedding", "inputTextTokenCount",
  "embeddingsByType"}``; Titan Multimodal's ``embeddingConfig.outputEmbeddingLength`` is its
  ``dimensions``. One text a call.
- Nova Multimodal Embeddings: ``{"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams":
  {"embeddingPurpose", "embeddingDimension", "text": {"value", "truncationMode"}}}`` ->
  ``{"embeddings": [{"embeddingType": "TEXT", "embedding"}]}``. One text a call; the body
  reports no token count.
- Cohere Embed: ``{"texts", "input_type", "embedding_types", "output_dimension"}`` ->
  ``{"id", "embeddings", "texts", "response_type"}``. Up to 96 texts a call.

Only text is embedded here: image, audio and video inputs are refused by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse
from modelmart.core.errors import UpstreamError

from . import _check as check

TITAN, NOVA, COHERE = "titan_embed", "nova_embed", "cohere_embed"
COHERE_BATCH = 96


@dataclass(slots=True)
class EmbeddingOptions:
    """What the client's body asked of the answer, beyond the canonical request."""

    normalize: bool = False
    types: list[str] = field(default_factory=list)  # Titan embeddingTypes / Cohere embedding_types


# ---- client bodies -> canonical --------------------------------------------------------

_TITAN = frozenset({"inputText", "dimensions", "normalize", "embeddingTypes",
                    "inputImage", "embeddingConfig"})
_TITAN_TYPES = ("float", "binary")


def decode_titan(data: dict, model_id: str) -> tuple[EmbeddingRequest, EmbeddingOptions]:
    check.only(data, _TITAN)
    if data.get("inputImage") is not None:
        raise check.fail("image embeddings are not available on this gateway; send "
                         "inputText", "inputImage")
    text = check.string(check.required(data, "inputText", "inputText"), "inputText",
                        nonempty=True)
    req = EmbeddingRequest(model=model_id, inputs=[text])
    if data.get("dimensions") is not None:
        req.dimensions = check.integer(data["dimensions"], "dimensions", minimum=1)
    config = data.get("embeddingConfig")
    if config is not None:
        length = check.obj(config, "embeddingConfig").get("outputEmbeddingLength")
        if length is not None:
            req.dimensions = check.integer(length, "embeddingConfig.outputEmbeddingLength",
                                           minimum=1)
    options = EmbeddingOptions(normalize=True)  # Titan v2's default
    if data.get("normalize") is not None:
        options.normalize = check.boolean(data["normalize"], "normalize")
    if data.get("embeddingTypes") is not None:
        options.types = _types(data["embeddingTypes"], "embeddingTypes", _TITAN_TYPES)
    return req, options


_NOVA = frozenset({"schemaVersion", "taskType", "singleEmbeddingParams"})
_NOVA_PARAMS = frozenset({"embeddingPurpose", "embeddingDimension", "text", "image",
                          "audio", "video"})


def decode_nova(data: dict, model_id: str) -> tuple[EmbeddingRequest, EmbeddingOptions]:
    check.only(data, _NOVA)
    task = check.required(data, "taskType", "taskType")
    if task != "SINGLE_EMBEDDING":
        raise check.fail(f"only SINGLE_EMBEDDING is served (synchronously), got {task!r}",
                         "taskType")
    p = "singleEmbeddingParams"
    params = check.obj(check.required(data, p, p), p)
    check.only(params, _NOVA_PARAMS, p)
    for kind in ("image", "audio", "video"):
        if params.get(kind) is not None:
            raise check.fail(f"{kind} embeddings are not available on this gateway; send "
                             f"text", f"{p}.{kind}")
    text = check.obj(check.required(params, "text", f"{p}.text"), f"{p}.text")
    if text.get("source") is not None:
        raise check.fail("text from S3 is not available on this gateway; send the text in "
                         "value", f"{p}.text.source")
    value = check.string(check.required(text, "value", f"{p}.text.value"), f"{p}.text.value",
                         nonempty=True)
    req = EmbeddingRequest(model=model_id, inputs=[value])
    if params.get("embeddingDimension") is not None:
        req.dimensions = check.integer(params["embeddingDimension"], f"{p}.embeddingDimension",
                                       minimum=1)
    return req, EmbeddingOptions()


_COHERE = frozenset({"texts", "input_type", "truncate", "embedding_types",
                     "output_dimension", "images", "max_tokens"})


def decode_cohere(data: dict, model_id: str) -> tuple[EmbeddingRequest, EmbeddingOptions]:
    check.only(data, _COHERE)
    if data.get("images") is not None:
        raise check.fail("image embeddings are not available on this gateway; send texts",
                         "images")
    raw = check.array(check.required(data, "texts", "texts"), "texts", nonempty=True)
    if len(raw) > COHERE_BATCH:
        raise check.fail(f"at most {COHERE_BATCH} texts a request, got {len(raw)}", "texts")
    texts = [check.string(t, f"texts.{i}", nonempty=True) for i, t in enumerate(raw)]
    req = EmbeddingRequest(model=model_id, inputs=texts)
    if data.get("output_dimension") is not None:
        req.dimensions = check.integer(data["output_dimension"], "output_dimension", minimum=1)
    options = EmbeddingOptions()
    if data.get("embedding_types") is not None:
        options.types = _types(data["embedding_types"], "embedding_types", ("float",))
    return req, options


def _types(value: Any, param: str, known: tuple[str, ...]) -> list[str]:
    out = []
    for i, kind in enumerate(check.array(value, param, nonempty=True)):
        if kind not in known:
            raise check.fail(f"{kind!r} is not available on this gateway; known: "
                             f"{', '.join(known)}", f"{param}.{i}")
        out.append(kind)
    return out


# ---- canonical -> client answers ------------------------------------------------------


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def encode_response(family: str, resp: EmbeddingResponse, options: EmbeddingOptions,
                    inputs: list[str], request_id: str) -> dict:
    vectors = [unit(v) for v in resp.vectors] if options.normalize else resp.vectors
    if family == TITAN:
        out: dict[str, Any] = {"embedding": vectors[0], "inputTextTokenCount": resp.input_tokens}
        if options.types:
            out["embeddingsByType"] = {t: _typed(vectors[0], t) for t in options.types}
        return out
    if family == NOVA:
        return {"embeddings": [{"embeddingType": "TEXT", "embedding": vectors[0]}]}
    if options.types:
        return {"id": request_id, "embeddings": {"float": vectors}, "texts": inputs,
                "response_type": "embeddings_by_type"}
    return {"id": request_id, "embeddings": vectors, "texts": inputs,
            "response_type": "embeddings_floats"}


def _typed(vector: list[float], kind: str) -> list:
    # Titan's binary type: one bit a dimension, 1 where the value is positive.
    return [1 if v > 0 else 0 for v in vector] if kind == "binary" else vector


# ---- canonical -> upstream bodies, and their answers back -----------------------------


def encode_upstream(family: str, texts: list[str], dimensions: int | None) -> dict:
    """The body asking a Bedrock embeddings model for ``texts`` (one text, except Cohere)."""
    if family == TITAN:
        body: dict[str, Any] = {"inputText": texts[0]}
        if dimensions is not None:
            body["dimensions"] = dimensions
        return body
    if family == NOVA:
        params: dict[str, Any] = {"embeddingPurpose": "GENERIC_INDEX",
                                  "text": {"truncationMode": "NONE", "value": texts[0]}}
        if dimensions is not None:
            params["embeddingDimension"] = dimensions
        return {"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": params}
    body = {"texts": texts, "input_type": "search_document", "truncate": "NONE"}
    if dimensions is not None:
        body["output_dimension"] = dimensions
    return body


def decode_upstream(family: str, data: Any, count: int) -> tuple[list[list[float]], int | None]:
    """(vectors, input tokens or None when the body reports none) of an upstream answer."""
    if not isinstance(data, dict):
        raise _malformed("the body is not an object")
    if family == TITAN:
        tokens = data.get("inputTextTokenCount")
        return [_vector(data.get("embedding"), "embedding")], (
            tokens if check.is_int(tokens) and tokens >= 0 else None)
    if family == NOVA:
        items = data.get("embeddings")
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise _malformed("no 'embeddings' array")
        return [_vector(items[0].get("embedding"), "embeddings.0.embedding")], None
    items = data.get("embeddings")
    if isinstance(items, dict):
        items = items.get("float")
    if not isinstance(items, list) or len(items) != count:
        raise _malformed(f"expected {count} embeddings")
    return [_vector(v, f"embeddings.{i}") for i, v in enumerate(items)], None


def _vector(raw: Any, where: str) -> list[float]:
    if isinstance(raw, list) and raw and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        return [float(x) for x in raw]
    raise _malformed(f"{where} is not an array of numbers")


def _malformed(why: str) -> UpstreamError:
    return UpstreamError(f"malformed embeddings reply from the Bedrock upstream: {why}")


def upstream_family(model_id: str) -> str | None:
    """The body family a Bedrock embeddings model takes, from its id (a model id, an
    inference profile id or an ARN); None for a model that does not embed."""
    name = model_id.rsplit("/", 1)[-1].lower()
    if "titan-embed" in name:
        return TITAN
    if "nova" in name and "embed" in name:
        return NOVA
    if "cohere.embed" in name:
        return COHERE
    return None
