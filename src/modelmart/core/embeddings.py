"""The canonical embeddings request and response (``POST /v1/embeddings`` and its kin).

Inputs are text only: token-id arrays belong to one tokenizer, and the model that serves a
request is the router's choice, so the gateway refuses them rather than guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

EncodingFormat = Literal["float", "base64"]


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    # Requested vector size (OpenAI text-embedding-3, Gemini outputDimensionality); None:
    # the model's own.
    dimensions: int | None = None
    # How the client wants the vectors on the wire; providers always return floats.
    encoding_format: EncodingFormat = "float"
    user: str | None = None
    # Fields the client sent that we do not interpret; passed on only to upstreams of the
    # client's own dialect (OpenAI-compatible ones).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class EmbeddingResponse:
    model: str
    vectors: list[list[float]]  # one per input, in input order
    input_tokens: int
    # True when the upstream reported no usage and ``input_tokens`` is our estimate.
    estimated: bool = False


def estimate_tokens(inputs: list[str]) -> int:
    """About four characters a token: for reservations, and for upstreams (Gemini) that do
    not report what they counted."""
    return sum(math.ceil(len(text) / 4) for text in inputs)
