"""Bedrock ``InvokeModel`` and ``InvokeModelWithResponseStream`` over any catalog model
(``POST /model/{modelId}/invoke``, ``/invoke-with-response-stream``).

The body is the model family's own (``dialects/bedrock_invoke``: Anthropic Messages, Nova,
Llama and Mistral prompts, Titan/Nova/Cohere embeddings), read from its shape once the body
is in; so unlike ``handle_chat`` the surface — which family's encoders answer — is chosen
per request, and an embeddings body takes the embeddings path (``routing/embed.py``). The
money path is the same: one ``Admission.call`` that settles however the request ends, under
the ledger surface ``bedrock_invoke``. Answers carry Bedrock's usage headers
(``x-amzn-bedrock-input-token-count`` ..., which LangChain's ``ChatBedrock`` reads).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson

from modelmart.core.errors import GatewayError, InternalError
from modelmart.core.types import Request, Usage
from modelmart.dialects import bedrock_invoke as wire
from modelmart.dialects.bedrock_invoke import Decoded, embeddings
from modelmart.metering.bounds import embedding_token_bound
from modelmart.routing import Routed
from modelmart.routing.embed import embed, embedding_deployments

from .admission import Call
from .http import Receive, Scope, Send, parse_json, read_body, send_json
from .surface import BedrockSurface, _route_headers, _stream, _Watched, send_error

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.api")

SURFACE_NAME = "bedrock_invoke"
INTERNAL = "internal error; see the server log"


class InvokeSurface(BedrockSurface):
    """One per body family: the family's encoders stand in for a dialect module."""

    def response_options(self, req: Request, call: Call) -> dict:
        return {}


SURFACES = {name: InvokeSurface(SURFACE_NAME, family, family.id_prefix)  # type: ignore[arg-type]
            for name, family in wire.FAMILIES.items()}
# Errors met before the body's family is known (authentication, a malformed body).
ERRORS = InvokeSurface(SURFACE_NAME, wire.ERRORS, "")  # type: ignore[arg-type]


async def handle_invoke(app: "App", scope: Scope, receive: Receive, send: Send,
                        model_id: str, stream: bool) -> None:
    metrics = app.metrics
    metrics.in_flight += 1
    async with app.admission.call(SURFACE_NAME) as call:  # settles on every way out
        sent = _Watched(send)
        surface = ERRORS
        try:
            call.authenticate(scope)
            body = await read_body(scope, receive, app.settings.max_body_bytes)
            call.verify_body(scope, body)
            # After the body is read: a refusal before it would close the connection on a
            # client still sending.
            wire.check_headers(scope["headers"])
            decoded = wire.decode_request(parse_json(body), model_id, stream=stream)
            surface = SURFACES[decoded.family.name]
            if decoded.family.embeds:
                await _embed(app, surface, call, decoded, sent)
            elif stream:
                await call.admit(decoded.request)
                call.headers["x-amzn-bedrock-content-type"] = "application/json"
                call.headers["x-amzn-requestid"] = call.rid
                await _stream(app, surface, call, decoded.request, False, scope, receive, sent)
            else:
                await call.admit(decoded.request)
                await _complete(app, surface, call, decoded.request, sent)
        except GatewayError as err:
            call.fail(err)
            if not sent.started:
                await send_error(surface, send, call, err)
        except Exception:  # a bug of ours: log it, answer in AWS's shape
            log.exception("request %s failed", call.rid)
            call.settle(status="error", http_status=500, error="internal error",
                        attempts=1 if call.admitted else 0)
            if not sent.started:
                await send_error(surface, send, call, InternalError(INTERNAL))
        finally:
            metrics.in_flight -= 1


async def _complete(app: "App", surface: InvokeSurface, call: Call, req: Request,
                    send: Send) -> None:
    resp, routed = await app.router.complete(req)
    resp.id = surface.id_prefix + call.rid
    resp.created = resp.created or int(time.time())
    record = call.settle(usage=resp.usage, deployment=routed.deployment,
                         attempts=routed.attempts, status="ok", http_status=200)
    body = surface.dialect.encode_response(resp, req.model)
    usage = body.get("usage")
    if record is not None and isinstance(usage, dict):
        usage["cost"] = record.price_pico / 10**12  # as on the other surfaces
    await send_json(send, 200, orjson.dumps(body), _headers(call, routed, resp.usage))


async def _embed(app: "App", surface: InvokeSurface, call: Call, decoded: Decoded,
                 send: Send) -> None:
    req = decoded.request
    # Before admission: a chat-only model is refused without reserving anything.
    embedding_deployments(app.router, app.catalog.get(req.model))
    await call.admit_embedding(req.model, embedding_token_bound(req.inputs))
    resp, routed = await embed(app.router, req)
    usage = Usage(input_tokens=resp.input_tokens)
    call.settle(usage=usage, deployment=routed.deployment, attempts=routed.attempts,
                status="ok", http_status=200, estimated=resp.estimated)
    body = embeddings.encode_response(decoded.family.name, resp, decoded.options, req.inputs,
                                      call.rid)
    await send_json(send, 200, orjson.dumps(body), _headers(call, routed, usage))


def _headers(call: Call, routed: Routed, usage: Usage) -> dict[str, str]:
    """Bedrock's own answer headers: its request id and the usage (what LangChain's
    ``ChatBedrock`` reads for a non-streamed answer)."""
    headers = _route_headers(call, routed)
    headers["x-amzn-requestid"] = call.rid
    headers["x-amzn-bedrock-invocation-latency"] = str(int((time.perf_counter() - call.t0) * 1000))
    headers["x-amzn-bedrock-input-token-count"] = str(usage.input_tokens)
    headers["x-amzn-bedrock-output-token-count"] = str(usage.output_tokens)
    if usage.cache_read_tokens or usage.cache_write_tokens:
        headers["x-amzn-bedrock-cache-read-input-token-count"] = str(usage.cache_read_tokens)
        headers["x-amzn-bedrock-cache-write-input-token-count"] = str(usage.cache_write_tokens)
    return headers
