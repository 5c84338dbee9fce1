"""The fake Bedrock's embeddings models behind ``POST /model/{modelId}/invoke``, written from
the Bedrock user guide's model parameter pages (not from modelmart's code, which it never
imports):

- Amazon Titan Text Embeddings V2 (``amazon.titan-embed-text-v2:0``): ``inputText``
  (required), ``dimensions`` 1024 (default), 512 or 256, ``normalize`` (default true),
  ``embeddingTypes`` ``float``/``binary``; answers ``embedding``, ``inputTextTokenCount``
  and, when types were asked, ``embeddingsByType``. V1 (``amazon.titan-embed-text-v1``)
  takes ``inputText`` only and answers 1536 values.
- Amazon Nova Multimodal Embeddings (``amazon.nova-2-multimodal-embeddings-v1:0``):
  ``taskType: SINGLE_EMBEDDING``, ``singleEmbeddingParams`` with ``embeddingPurpose``
  (required), ``embeddingDimension`` 256/384/1024/3072 (default 3072) and ``text``
  (``truncationMode`` and ``value``, both required); answers ``{"embeddings":
  [{"embeddingType": "TEXT", "embedding"}]}``, the token count in the
  ``X-Amzn-Bedrock-Input-Token-Count`` header.
- Cohere Embed v3 (``cohere.embed-english-v3``): ``texts`` (1 to 96), ``input_type``
  (required), ``truncate``, ``embedding_types``; answers ``id``, ``embeddings``, ``texts``,
  ``response_type``.

Vectors are made up but deterministic, a token is a word or a punctuation mark.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid
from typing import Any

TITAN_V2_SIZES = (1024, 512, 256)
NOVA_SIZES = (3072, 1024, 384, 256)
NOVA_PURPOSES = ("GENERIC_INDEX", "GENERIC_RETRIEVAL", "TEXT_RETRIEVAL", "IMAGE_RETRIEVAL",
                 "VIDEO_RETRIEVAL", "DOCUMENT_RETRIEVAL", "AUDIO_RETRIEVAL", "CLASSIFICATION",
                 "CLUSTERING")
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


class Refusal(Exception):
    """A ValidationException the real API would answer."""


def family(model_id: str) -> str | None:
    if "titan-embed-text" in model_id:
        return "titan"
    if "nova" in model_id and "embed" in model_id:
        return "nova"
    if "cohere.embed" in model_id:
        return "cohere"
    return None


def tokens(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


def vector(model_id: str, text: str, size: int, *, unit: bool = True) -> list[float]:
    rng = random.Random(hashlib.sha256(f"{model_id}\0{text}".encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(size)]
    if not unit:
        return [v * 3 for v in values]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def answer(model_id: str, body: Any) -> tuple[dict, int]:
    """(the answer body, input tokens), or ``Refusal``."""
    if not isinstance(body, dict):
        raise Refusal("Malformed input request, please reformat your input and try again.")
    kind = family(model_id)
    if kind == "titan":
        return _titan(model_id, body)
    if kind == "nova":
        return _nova(model_id, body)
    return _cohere(model_id, body)


def _extraneous(body: dict, known: set[str], where: str = "") -> None:
    extra = sorted(set(body) - known)
    if extra:
        raise Refusal(f"Malformed input request: #{where}: extraneous key [{extra[0]}] is not "
                      "permitted, please reformat your input and try again.")


def _titan(model_id: str, body: dict) -> tuple[dict, int]:
    v2 = "v2" in model_id
    _extraneous(body, {"inputText", "dimensions", "normalize", "embeddingTypes"} if v2
                else {"inputText"})
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        raise Refusal("Malformed input request: #: required key [inputText] not found, "
                      "please reformat your input and try again.")
    size = body.get("dimensions", 1024) if v2 else 1536
    if size not in (TITAN_V2_SIZES if v2 else (1536,)):
        raise Refusal(f"Malformed input request: #/dimensions: {size} is not a valid enum "
                      "value, please reformat your input and try again.")
    normalize = body.get("normalize", True)
    values = vector(model_id, text, size, unit=bool(normalize))
    out: dict[str, Any] = {"embedding": values, "inputTextTokenCount": tokens(text)}
    types = body.get("embeddingTypes")
    if types:
        out["embeddingsByType"] = {t: ([1 if v > 0 else 0 for v in values] if t == "binary"
                                       else values) for t in types}
    return out, tokens(text)


def _nova(model_id: str, body: dict) -> tuple[dict, int]:
    _extraneous(body, {"schemaVersion", "taskType", "singleEmbeddingParams"})
    if body.get("taskType") != "SINGLE_EMBEDDING":
        raise Refusal("Malformed input request: taskType must be SINGLE_EMBEDDING for "
                      "InvokeModel.")
    params = body.get("singleEmbeddingParams")
    if not isinstance(params, dict):
        raise Refusal("Malformed input request: #: required key [singleEmbeddingParams] not "
                      "found.")
    if params.get("embeddingPurpose") not in NOVA_PURPOSES:
        raise Refusal("Malformed input request: #/singleEmbeddingParams/embeddingPurpose: "
                      "required and must be one of " + ", ".join(NOVA_PURPOSES))
    size = params.get("embeddingDimension", 3072)
    if size not in NOVA_SIZES:
        raise Refusal(f"Malformed input request: #/singleEmbeddingParams/embeddingDimension: "
                      f"{size} is not a valid enum value.")
    text = params.get("text")
    if not isinstance(text, dict) or not isinstance(text.get("value"), str) \
            or text.get("truncationMode") not in ("START", "END", "NONE"):
        raise Refusal("Malformed input request: #/singleEmbeddingParams/text: value and "
                      "truncationMode are required.")
    return ({"embeddings": [{"embeddingType": "TEXT",
                             "embedding": vector(model_id, text["value"], size)}]},
            tokens(text["value"]))


def _cohere(model_id: str, body: dict) -> tuple[dict, int]:
    _extraneous(body, {"texts", "input_type", "truncate", "embedding_types", "images"})
    texts = body.get("texts")
    if not isinstance(texts, list) or not 1 <= len(texts) <= 96 or not all(
            isinstance(t, str) for t in texts):
        raise Refusal("Malformed input request: #/texts: expected 1 to 96 strings.")
    if body.get("input_type") not in COHERE_INPUT_TYPES:
        raise Refusal("Malformed input request: #: required key [input_type] not found.")
    vectors = [vector(model_id, t, 1024) for t in texts]
    types = body.get("embedding_types")
    out: dict[str, Any] = {"id": str(uuid.uuid4()), "texts": texts}
    if types:
        out.update(embeddings={t: vectors for t in types}, response_type="embeddings_by_type")
    else:
        out.update(embeddings=vectors, response_type="embeddings_floats")
    return out, sum(tokens(t) for t in texts)
