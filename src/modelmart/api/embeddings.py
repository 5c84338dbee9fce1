"""``POST /v1/embeddings`` (OpenAI's shape): authenticate, decode, admit, route, settle,
encode. Embeddings bill input tokens only, at the serving deployment's input price; the
ledger's surface is ``openai_embeddings``. Errors are OpenAI error bodies."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING

import orjson

from modelmart.core.embeddings import EmbeddingRequest, estimate_tokens
from modelmart.core.errors import GatewayError, InternalError
from modelmart.core.ids import new_id
from modelmart.core.types import Usage
from modelmart.dialects import openai_embeddings
from modelmart.routing import Routed
from modelmart.routing.embed import embed, embedding_deployments

from .guard import Call
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
    call = Call(rid=new_id(), surface=EMBEDDINGS.name, key=None, started=time.time(),
                t0=time.perf_counter())
    try:
        body = await read_body(scope, receive, app.settings.max_body_bytes)
        app.guard.authenticate(scope, call, body)
        req = openai_embeddings.decode_request(parse_json(body))
        # Before admission: a chat-only model is refused without reserving anything.
        embedding_deployments(app.router, app.catalog.get(req.model))
        await app.guard.admit_embedding(call, req.model, estimate_tokens(req.inputs))
    except GatewayError as err:
        app.guard.settle(call, usage=None, deployment=None, attempts=0, status="refused",
                         http_status=err.status, error=err.message)
        await send_error(EMBEDDINGS, send, call, err)
        return
    except Exception:  # a bug of ours: log it, answer in OpenAI's shape
        log.exception("request %s failed", call.rid)
        await send_error(EMBEDDINGS, send, call, InternalError(INTERNAL))
        return
    await _embed(app, call, req, send)


async def _embed(app: "App", call: Call, req: EmbeddingRequest, send: Send) -> None:
    try:
        resp, routed = await embed(app.router, req)
    except Exception as exc:
        err = exc if isinstance(exc, GatewayError) else InternalError(INTERNAL)
        if err is not exc:
            log.exception("request %s failed", call.rid)
        app.guard.settle(call, usage=None, deployment=None, attempts=getattr(err, "attempts", 1),
                         status="error", http_status=err.status, error=err.message)
        await send_error(EMBEDDINGS, send, call, err)
        return
    record = app.guard.settle(call, usage=Usage(input_tokens=resp.input_tokens),
                              deployment=routed.deployment, attempts=routed.attempts,
                              status="ok", http_status=200, estimated=resp.estimated)
    body = openai_embeddings.encode_response(resp, req.model, encoding_format=req.encoding_format)
    if record is not None:
        # As on the chat surfaces (OpenRouter's convention): the caller's price, in USD.
        body["usage"]["cost"] = record.price_pico / 10**12  # int / int: the nearest float
    await send_json(send, 200, orjson.dumps(body), _headers(call, routed))


def _headers(call: Call, routed: Routed) -> dict[str, str]:
    return {"x-request-id": call.rid, **call.headers,
            "x-modelmart-deployment": routed.deployment.name,
            "x-modelmart-attempts": str(routed.attempts)}
