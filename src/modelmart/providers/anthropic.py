"""Anthropic's Messages API (and servers that speak it) as an upstream."""

from __future__ import annotations

from functools import cached_property

from typing import AsyncIterator

import orjson

from modelmart.core.types import Request, Response, StreamEvent
from modelmart.dialects import anthropic_messages as wire

from .base import Provider
from .h1 import HeaderBlock
from .http import decode_json, post_json
from .streaming import sse_upstream

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
COUNTED_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class AnthropicProvider(Provider):
    kind = "anthropic"
    honours_deadline = True  # its calls go through http.post_json / open_stream

    @property
    def url(self) -> str:
        return (self.config.base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"

    @cached_property
    def wire_headers(self) -> HeaderBlock:
        return HeaderBlock(self.headers())

    def headers(self) -> dict[str, str]:
        # Anthropic authenticates with x-api-key whatever auth_header says (its default,
        # bearer, is OpenAI's); a proxy that wants more sets config.headers.
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION,
                   "user-agent": "modelmart"}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        headers.update(self.config.headers)
        return headers

    def body(self, request: Request, *, stream: bool) -> bytes:
        drop = set(self.config.unsupported_params)
        if not self.config.supports_json_schema:
            drop.add("output_format")
        return orjson.dumps(
            wire.encode_request(request, self.config.model, stream=stream, drop=drop))

    async def complete(self, request: Request) -> Response:
        raw = await post_json(self.http, self.url, self.wire_headers,
                              self.body(request, stream=False), self.config, wire.decode_error)
        return decode_json(raw, self.config, wire.decode_response)

    async def count_input_tokens(self, request: Request) -> int:
        """Anthropic's own count (``POST /v1/messages/count_tokens``), which takes only the
        prompt's fields."""
        data = wire.encode_request(request, self.config.model, stream=False)
        body = {k: data[k] for k in COUNTED_FIELDS if k in data}
        url = self.url + "/count_tokens"
        raw = await post_json(self.http, url, self.wire_headers, orjson.dumps(body),
                              self.config, wire.decode_error)
        return decode_json(raw, self.config, wire.decode_token_count)

    def stream_batches(self, request: Request) -> AsyncIterator[list[StreamEvent]]:
        return sse_upstream(self.http, self.url, self.wire_headers,
                            lambda: self.body(request, stream=True), self.config,
                            wire.decode_error, wire.StreamDecoder())
