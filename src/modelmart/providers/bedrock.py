"""Amazon Bedrock's Converse API as an upstream.

Requests are signed with SigV4 by botocore's own signer (service ``bedrock``), with keys
from ``config.options`` (``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``); or, with no keys there, ``config.api_key`` is sent as a Bedrock
API key (``Authorization: Bearer``); or, with neither, botocore's default credential chain
(environment, shared files, instance role) is used. ``config.model`` may be a model id, an
inference profile id (``us.amazon.nova-lite-v1:0``) or an ARN: it is one path segment.

A deployment of an embeddings model (Titan Text Embeddings, Nova Multimodal Embeddings,
Cohere Embed: told by its model id, or by ``options.embeddings: titan | nova | cohere``)
serves ``POST /v1/embeddings`` and the other embeddings surfaces through InvokeModel
(``embed``); a deployment of any other model does not embed.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse, estimate_tokens
from modelmart.core.errors import AuthenticationFailed
from modelmart.core.types import Request, Response, StreamEvent
from modelmart.dialects import bedrock_converse as wire
from modelmart.dialects.bedrock_invoke import embeddings as embed_wire
from modelmart.dialects.eventstream import CONTENT_TYPE as EVENTSTREAM, EventStreamDecoder

from .base import Provider, ProviderConfig
from .http import decode_json, open_stream, post_json
from .streaming import batches_of

DEFAULT_REGION = "us-east-1"
SIGNING_NAME = "bedrock"  # the service name in the credential scope, not the host prefix
# Embedding calls of one request in flight at once (Titan and Nova take one text a call).
EMBED_CONCURRENCY = 8
_EMBED_FAMILIES = {"titan": embed_wire.TITAN, "nova": embed_wire.NOVA,
                   "cohere": embed_wire.COHERE}


class BedrockProvider(Provider):
    kind = "bedrock"
    honours_deadline = True  # its calls go through http.post_json / open_stream

    def __init__(self, config: ProviderConfig, http: Any) -> None:
        super().__init__(config, http)
        self.region = str(config.options.get("region") or DEFAULT_REGION)
        self._static = _static_credentials(config.options)
        self._chain: Any = None  # botocore's default chain, resolved on first use
        self.embed_family = _embed_family(config)
        self.embeds = self.embed_family is not None  # routing/embed.py asks

    @property
    def base_url(self) -> str:
        default = f"https://bedrock-runtime.{self.region}.amazonaws.com"
        return (self.config.base_url or default).rstrip("/")

    def url(self, *, stream: bool) -> str:
        # The id is percent-encoded whole (':' and '/' in profile ids and ARNs included),
        # exactly as the AWS SDKs put it in the path, and the signature covers that form.
        action = "converse-stream" if stream else "converse"
        return f"{self.base_url}/model/{quote(self.config.model, safe='')}/{action}"

    def invoke_url(self) -> str:
        return f"{self.base_url}/model/{quote(self.config.model, safe='')}/invoke"

    def body(self, request: Request) -> bytes:
        drop = set(self.config.unsupported_params)
        if not self.config.supports_json_schema:
            drop.add("outputConfig")
        return orjson.dumps(wire.encode_request(request, self.config.model, drop=drop))

    async def headers(self, url: str, body: bytes, *, stream: bool) -> dict[str, str]:
        headers = {"content-type": "application/json", "user-agent": "modelmart"}
        if stream:
            headers["accept"] = EVENTSTREAM
        headers.update(self.config.headers)
        credentials = await self._current_credentials()
        if credentials is None:
            headers["authorization"] = f"Bearer {self.config.api_key}"
            return headers
        # Sign last, over the exact bytes and headers that will be sent.
        signed = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(signed)
        return {k.lower(): v for k, v in signed.headers.items()}

    async def _current_credentials(self) -> Any:
        """SigV4 credentials, or None to send the API key instead."""
        if self._static is not None:
            return self._static
        if self.config.api_key:
            return None
        # Resolving the chain, and refreshing what it found, may touch files, STS or the
        # instance metadata service: keep it off the event loop.
        if self._chain is None:
            self._chain = await asyncio.to_thread(_chain_credentials)
        if self._chain is None:
            raise AuthenticationFailed("no AWS credentials for the Bedrock deployment: set "
                                       "options.aws_access_key_id and "
                                       "options.aws_secret_access_key, or api_key")
        frozen = await asyncio.to_thread(self._chain.get_frozen_credentials)
        # Scrubbed from upstream error text like configured keys (a refresh adds the new).
        self.config.add_secrets(frozen.access_key, frozen.secret_key, frozen.token)
        return frozen

    async def complete(self, request: Request) -> Response:
        url, body = self.url(stream=False), self.body(request)
        headers = await self.headers(url, body, stream=False)
        raw = await post_json(self.http, url, headers, body, self.config,
                              wire.decode_error)
        return decode_json(raw, self.config,
                           lambda data: wire.decode_response(data, self.config.model))

    async def count_input_tokens(self, request: Request) -> int:
        """Bedrock's own count: ``CountTokens`` over the Converse form of the request."""
        url = f"{self.base_url}/model/{quote(self.config.model, safe='')}/count-tokens"
        body = orjson.dumps(wire.encode_count_tokens(request, self.config.model))
        headers = await self.headers(url, body, stream=False)
        raw = await post_json(self.http, url, headers, body, self.config, wire.decode_error)
        return decode_json(raw, self.config, wire.decode_token_count)

    def stream_batches(self, request: Request) -> AsyncIterator[list[StreamEvent]]:
        async def opening():
            url, body = self.url(stream=True), self.body(request)
            headers = await self.headers(url, body, stream=True)
            return await open_stream(self.http, url, headers, body, self.config,
                                     wire.decode_error)

        frames = EventStreamDecoder(self.config.limits.event_bytes)
        decoder = wire.StreamDecoder(self.config.model)

        def decode_chunk(chunk: bytes, batch: list[StreamEvent]) -> None:
            for message in frames.feed(chunk):
                batch += decoder.feed_message(message)

        def finish(batch: list[StreamEvent]) -> None:
            frames.close()
            batch += decoder.close()

        return batches_of(opening, decode_chunk, finish, self.config)

    # ---- embeddings -------------------------------------------------------------------

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """InvokeModel with the model's own body: one call a text (Cohere: 96 texts a
        call), a few at a time. Titan reports its token count; for Nova and Cohere, whose
        bodies report none, ``input_tokens`` is estimated and the response says so."""
        family = self.embed_family
        size = embed_wire.COHERE_BATCH if family == embed_wire.COHERE else 1
        groups = [request.inputs[i:i + size] for i in range(0, len(request.inputs), size)]
        gate = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def one(texts: list[str]) -> tuple[list[list[float]], int | None]:
            async with gate:
                return await self._embed_call(family, texts, request.dimensions)

        tasks = [asyncio.ensure_future(one(g)) for g in groups]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # one failed: the others are not waited for
                task.cancel()
        vectors = [v for got, _ in results for v in got]
        counts = [n for _, n in results]
        if all(n is not None for n in counts):
            return EmbeddingResponse(self.config.model, vectors, sum(counts))  # type: ignore[arg-type]
        return EmbeddingResponse(self.config.model, vectors,
                                 estimate_tokens(request.inputs), estimated=True)

    async def _embed_call(self, family: str, texts: list[str], dimensions: int | None
                          ) -> tuple[list[list[float]], int | None]:
        url = self.invoke_url()
        body = orjson.dumps(embed_wire.encode_upstream(family, texts, dimensions))
        headers = await self.headers(url, body, stream=False)
        raw = await post_json(self.http, url, headers, body, self.config, wire.decode_error)
        return decode_json(raw, self.config,
                           lambda data: embed_wire.decode_upstream(family, data, len(texts)))


def _static_credentials(options: dict) -> Credentials | None:
    key, secret = options.get("aws_access_key_id"), options.get("aws_secret_access_key")
    if not key and not secret:
        return None
    if not key or not secret:
        raise ValueError("Bedrock options need both aws_access_key_id and "
                         "aws_secret_access_key")
    return Credentials(str(key), str(secret), options.get("aws_session_token") or None)


def _embed_family(config: ProviderConfig) -> str | None:
    named = config.options.get("embeddings")
    if named is None:
        return embed_wire.upstream_family(config.model)
    if named not in _EMBED_FAMILIES:
        raise ValueError(f"Bedrock options.embeddings must be one of "
                         f"{', '.join(_EMBED_FAMILIES)}, got {named!r}")
    return _EMBED_FAMILIES[named]


def _chain_credentials() -> Any:
    import botocore.session

    return botocore.session.get_session().get_credentials()
