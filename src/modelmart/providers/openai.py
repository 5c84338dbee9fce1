"""OpenAI Chat Completions (and every OpenAI-compatible server: vLLM, Ollama, Groq,
Mistral, Azure-style proxies) as an upstream."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import AsyncIterator

import orjson

from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse, estimate_tokens
from modelmart.core.types import Request, Response, StreamEvent
from modelmart.dialects import openai_chat as wire
from modelmart.dialects import openai_embeddings

from .base import Provider
from .h1 import HeaderBlock
from .http import auth_headers, decode_json, post_json
from .streaming import sse_upstream

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    kind = "openai"
    honours_deadline = True  # its calls go through http.post_json / open_stream

    @cached_property
    def wire_headers(self) -> HeaderBlock:
        return HeaderBlock(auth_headers(self.config))

    @property
    def url(self) -> str:
        return (self.config.base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"

    def body(self, request: Request, *, stream: bool) -> bytes:
        payload = wire.encode_request(
            request, self.config.model, stream=stream, drop=self.config.unsupported_params
        )
        return orjson.dumps(payload)

    async def complete(self, request: Request) -> Response:
        raw = await post_json(
            self.http, self.url, self.wire_headers,
            self.body(request, stream=False), self.config, wire.decode_error,
        )
        return decode_json(raw, self.config, wire.decode_response)

    def stream_batches(self, request: Request) -> AsyncIterator[list[StreamEvent]]:
        # A client of this same dialect gets the upstream's text literals as they are
        # (``TextRun``), which its encoder writes without encoding the text again.
        return sse_upstream(self.http, self.url, self.wire_headers,
                            lambda: self.body(request, stream=True), self.config,
                            wire.decode_error, wire.StreamDecoder(request.source == self.kind))

    # ---- embeddings -------------------------------------------------------------------

    @property
    def embeddings_url(self) -> str:
        return (self.config.base_url or DEFAULT_BASE_URL).rstrip("/") + "/embeddings"

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """``POST {base_url}/embeddings``. Vectors are asked for as base64 (exact float32 and
        a quarter of the size); a server that ignores that and sends floats is read too, and
        one that refuses it gets ``encoding_format`` listed in ``unsupported_params``."""
        payload = openai_embeddings.encode_request(
            replace(request, encoding_format="base64"), self.config.model,
            drop=self.config.unsupported_params)
        raw = await post_json(self.http, self.embeddings_url, self.wire_headers,
                              orjson.dumps(payload), self.config, openai_embeddings.decode_error)
        resp = decode_json(raw, self.config, openai_embeddings.decode_response)
        if resp.estimated:  # some OpenAI-compatible servers report no usage
            resp.input_tokens = estimate_tokens(request.inputs)
        return resp
