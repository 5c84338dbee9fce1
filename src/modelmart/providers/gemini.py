"""Google's Gemini API (generativelanguage.googleapis.com) as an upstream."""

from __future__ import annotations

from functools import cached_property

from typing import Any, AsyncIterator
from urllib.parse import quote

import orjson

from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse, estimate_tokens
from modelmart.core.errors import UpstreamError
from modelmart.core.types import Request, Response, StreamEvent
from modelmart.dialects import gemini as wire

from .base import Provider
from .h1 import HeaderBlock
from .http import decode_json, post_json
from .streaming import sse_upstream

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
# Google's limit on the requests in one batchEmbedContents call.
EMBED_BATCH = 100


class GeminiProvider(Provider):
    kind = "gemini"
    honours_deadline = True  # its calls go through http.post_json / open_stream

    def url(self, *, stream: bool) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        model = quote(self.config.model.removeprefix("models/"), safe="")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base}/{API_VERSION}/models/{model}:{method}"

    @cached_property
    def wire_headers(self) -> HeaderBlock:
        return HeaderBlock(self.headers())

    def headers(self) -> dict[str, str]:
        # Google takes the key in x-goog-api-key whatever auth_header says (its default,
        # bearer, would be an OAuth token); a proxy that wants more sets config.headers.
        headers = {"content-type": "application/json", "user-agent": "modelmart"}
        if self.config.api_key:
            headers["x-goog-api-key"] = self.config.api_key
        headers.update(self.config.headers)
        return headers

    def body(self, request: Request, *, stream: bool) -> bytes:
        drop = set(self.config.unsupported_params)
        if not self.config.supports_json_schema:
            drop.add("responseJsonSchema")
        return orjson.dumps(wire.encode_request(request, self.config.model, stream=stream, drop=drop))

    async def complete(self, request: Request) -> Response:
        url = self.url(stream=False)
        raw = await post_json(self.http, url, self.wire_headers, self.body(request, stream=False),
                              self.config, wire.decode_error)
        return decode_json(raw, self.config, wire.decode_response)

    def stream_batches(self, request: Request) -> AsyncIterator[list[StreamEvent]]:
        return sse_upstream(self.http, self.url(stream=True), self.wire_headers,
                            lambda: self.body(request, stream=True), self.config,
                            wire.decode_error, wire.StreamDecoder())

    # ---- embeddings -------------------------------------------------------------------

    def embed_url(self) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        model = quote(self.config.model.removeprefix("models/"), safe="")
        return f"{base}/{API_VERSION}/models/{model}:batchEmbedContents"

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """``models.batchEmbedContents``, 100 inputs a call. Gemini reports no token usage
        for embeddings: ``input_tokens`` is estimated (four characters a token) and the
        response says so (``estimated``), which the ledger records."""
        url = self.embed_url()
        vectors: list[list[float]] = []
        for start in range(0, len(request.inputs), EMBED_BATCH):
            texts = request.inputs[start:start + EMBED_BATCH]
            body = orjson.dumps(_embed_body(self.config.model, texts, request.dimensions))
            raw = await post_json(self.http, url, self.wire_headers, body, self.config,
                                  wire.decode_error)
            vectors.extend(_embed_vectors(raw, len(texts), self.config.label))
        return EmbeddingResponse(model=self.config.model, vectors=vectors,
                                 input_tokens=estimate_tokens(request.inputs), estimated=True)


# The batchEmbedContents wire shapes. Kept beside the provider because no client speaks
# them: they belong in dialects/gemini if a Gemini embeddings surface is ever added.


def _embed_body(model: str, texts: list[str], dimensions: int | None) -> dict[str, Any]:
    name = "models/" + model.removeprefix("models/")
    requests = []
    for text in texts:
        one: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            one["outputDimensionality"] = dimensions
        requests.append(one)
    return {"requests": requests}


def _embed_vectors(raw: bytes, count: int, label: str) -> list[list[float]]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    items = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise UpstreamError(f"malformed reply from {label}: expected {count} embeddings")
    out = []
    for item in items:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise UpstreamError(f"malformed reply from {label}: an embedding has no "
                                "numeric 'values'")
        out.append([float(v) for v in values])
    return out
