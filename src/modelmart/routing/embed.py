"""Routing an embeddings request: the model's deployments whose provider can embed, tried
in catalog order, one attempt each, moving on after a retryable failure (connection error,
timeout, 429, 5xx) and stopping at any other. An upstream 401/403 is the gateway's own key
being refused: the next deployment is tried, and if none is left the client gets a 502
saying so (as the router does for chat), never a 401 that would make it doubt its key.

Kept apart from ``Router`` on purpose: it needs only the catalog and the providers. It does
not (yet) use the router's strategies, per-deployment retries or health board.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from modelmart.catalog import Deployment, ModelEntry
from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse
from modelmart.core.errors import GatewayError, InvalidRequest, UpstreamError, is_retryable

from .router import Routed

if TYPE_CHECKING:
    from .router import Router

# Client extras are OpenAI embeddings fields: only OpenAI-compatible upstreams get them.
_EXTRAS_KIND = "openai"


def can_embed(provider: object) -> bool:
    """A provider with an ``embed`` method, unless it says its model does not embed
    (``embeds``: a Bedrock deployment of a chat model)."""
    return callable(getattr(provider, "embed", None)) and getattr(provider, "embeds", True)


def embedding_deployments(router: "Router", entry: ModelEntry,
                          token_ids: bool = False) -> list[Deployment]:
    """The deployments of ``entry`` that can embed (token-id arrays: only OpenAI-compatible
    ones, which read them with the client's tokenizer); a 400 when none can."""
    able = [d for d in entry.deployments if can_embed(router.providers.get(d.name))]
    if not able:
        raise InvalidRequest(f"The model '{entry.id}' does not support embeddings.",
                             param="model")
    if token_ids:
        able = [d for d in able if d.config.kind == _EXTRAS_KIND]
        if not able:
            raise InvalidRequest(
                f"The model '{entry.id}' cannot embed arrays of token ids: its deployments "
                f"read text with their own tokenizers, whose ids are not the client's (OpenAI's "
                f"tiktoken ids). Send the text instead: in LangChain, "
                f"OpenAIEmbeddings(check_embedding_ctx_length=False); with the OpenAI SDK, "
                f"'input' as a string or an array of strings.", param="input")
    return able


async def embed(router: "Router", req: EmbeddingRequest) -> tuple[EmbeddingResponse, Routed]:
    """One answer and where it came from. The error raised carries ``attempts``."""
    clock = time.monotonic
    started = clock()
    attempts = 0
    last: GatewayError | None = None
    for dep in embedding_deployments(router, router.catalog.get(req.model), req.token_ids):
        attempts += 1
        try:
            resp = await router.providers[dep.name].embed(_request_for(dep, req))
            _check(resp, req, dep)
        except GatewayError as err:
            moving_on = _credentials_refused(err) or is_retryable(err)
            last = _credentials_failure(dep, err) if _credentials_refused(err) else err
            last.attempts = attempts  # type: ignore[attr-defined]
            if not moving_on:
                raise
            continue
        return resp, Routed(dep, attempts, latency_ms=(clock() - started) * 1000)
    assert last is not None
    raise last


def _credentials_refused(err: GatewayError) -> bool:
    return err.status in (401, 403)


def _credentials_failure(dep: Deployment, err: GatewayError) -> UpstreamError:
    # The upstream's own message is left out: it may quote (part of) the key.
    return UpstreamError(
        f"The upstream of deployment '{dep.name}' rejected the gateway's credentials "
        f"(HTTP {err.status}). This is a gateway configuration problem, not a problem with "
        "your API key; please tell the gateway operator.")


def _request_for(dep: Deployment, req: EmbeddingRequest) -> EmbeddingRequest:
    if req.extra and dep.config.kind != _EXTRAS_KIND:
        return replace(req, extra={})
    return req


def _check(resp: EmbeddingResponse, req: EmbeddingRequest, dep: Deployment) -> None:
    if len(resp.vectors) != len(req.inputs):
        raise UpstreamError(f"deployment '{dep.name}' returned {len(resp.vectors)} embeddings "
                            f"for {len(req.inputs)} inputs")
