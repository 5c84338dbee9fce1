"""``POST /v1/embeddings`` (OpenAI's shape): authenticate, decode, admit, route, settle,
encode. Embeddings bill input tokens only, at the serving deployment's input price; the
ledger's surface is ``openai_embeddings``. Errors are OpenAI error bodies."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import orjson

from modelmart.core.embeddings import EmbeddingRequest
from modelmart.core.errors import GatewayError, InternalError
from modelmart.core.types import Usage
from modelmart.dialects import openai_embeddings
from modelmart.metering.bounds import embedding_token_bound
from modelmart.routing import Routed
from modelmart.routing.embed import embed, embedding_deployments

from .admission import Call
from .http import Receive, Scope, Send, parse_json, read_body, send_json
from .surface import Surface, send_error

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.api")

EMBEDDINGS = Surface("openai_embeddings", openai_embeddings, "")
PATHS = ("/v1/embeddings", "/embeddings")
INTERNAL = "internal error; see the server log"


def embedding_routes(app: "App") -> dict:
    """The app's route table entries for this surface."""
    return {("POST", path): partial(handle_embeddings, app) for path in PATHS}


async def handle_embeddings(app: "App", scope: Scope, receive: Receive, send: Send) -> None:
    async with app.admission.call(EMBEDDINGS.name) as call:  # settles on every way out
        try:
            req = await _admit(app, call, scope, receive)
            resp, routed = await embed(app.router, req)
        except GatewayError as err:
            call.fail(err)
            await send_error(EMBEDDINGS, send, call, err)
            return
        except Exception:  # a bug of ours: log it, answer in OpenAI's shape
            log.exception("request %s failed", call.rid)
            call.settle(status="error", http_status=500, error="internal error",
                        attempts=1 if call.admitted else 0)
            await send_error(EMBEDDINGS, send, call, InternalError(INTERNAL))
            return
        record = call.settle(usage=Usage(input_tokens=resp.input_tokens),
                             deployment=routed.deployment, attempts=routed.attempts,
                             status="ok", http_status=200, estimated=resp.estimated)
        body = openai_embeddings.encode_response(resp, req.model,
                                                 encoding_format=req.encoding_format)
        if record is not None:
            # As on the chat surfaces (OpenRouter's convention): the caller's price, in USD.
            body["usage"]["cost"] = record.price_pico / 10**12  # int / int: the nearest float
        await send_json(send, 200, orjson.dumps(body), _headers(call, routed))


async def _admit(app: "App", call: Call, scope: Scope, receive: Receive) -> EmbeddingRequest:
    call.authenticate(scope)
    body = await read_body(scope, receive, app.settings.max_body_bytes)
    call.verify_body(scope, body)
    req = openai_embeddings.decode_request(parse_json(body))
    # Before admission: a chat-only model is refused without reserving anything.
    embedding_deployments(app.router, app.catalog.get(req.model), req.token_ids)
    await call.admit_embedding(req.model, embedding_token_bound(req.inputs))
    return req


def _headers(call: Call, routed: Routed) -> dict[str, str]:
    return {"x-request-id": call.rid, **call.headers,
            "x-modelmart-deployment": routed.deployment.name,
            "x-modelmart-attempts": str(routed.attempts)}
