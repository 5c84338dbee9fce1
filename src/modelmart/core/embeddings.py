"""The canonical embeddings request and response (``POST /v1/embeddings`` and its kin).

Inputs are texts, or lists of token ids (``token_ids``): ids of the client's tokenizer
(LangChain's OpenAIEmbeddings sends tiktoken's), which only an upstream of that tokenizer
can read, so they go to OpenAI-compatible deployments only (``routing/embed.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

EncodingFormat = Literal["float", "base64"]


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list  # of str; of list[int] when ``token_ids``
    # Requested vector size (OpenAI text-embedding-3, Gemini outputDimensionality); None:
    # the model's own.
    dimensions: int | None = None
    # How the client wants the vectors on the wire; providers always return floats.
    encoding_format: EncodingFormat = "float"
    user: str | None = None
    # Fields the client sent that we do not interpret; passed on only to upstreams of the
    # client's own dialect (OpenAI-compatible ones).
    extra: dict[str, Any] = field(default_factory=dict)
    token_ids: bool = False


@dataclass(slots=True)
class EmbeddingResponse:
    model: str
    vectors: list[list[float]]  # one per input, in input order
    input_tokens: int
    # True when the upstream reported no usage and ``input_tokens`` is our estimate.
    estimated: bool = False


def estimate_tokens(inputs: list) -> int:
    """About four characters a token (a list of token ids: its length): for upstreams
    (Gemini) that do not report what they counted."""
    return sum(len(item) if isinstance(item, list) else math.ceil(len(item) / 4)
               for item in inputs)
