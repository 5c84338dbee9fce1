"""The request path shared by every chat surface: authenticate, decode, admit, route,
settle, encode.

A surface is a dialect module plus the id prefix its clients expect. Errors anywhere are
encoded in the caller's own dialect; nothing a client sends produces a traceback.
"""

from __future__ import annotations

import logging
import math
import time
from types import ModuleType
from typing import TYPE_CHECKING

import orjson

from modelmart.core.errors import GatewayError, InternalError
from modelmart.core.ids import new_id
from modelmart.core.types import Request
from modelmart.routing import Routed

from .guard import Call
from .http import Receive, Scope, Send, parse_json, read_body, run_stream, send_json, stream_start
from .streaming import send_metered

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.api")


class Surface:
    """A client API: a dialect module, the id prefix its clients expect, and the few places
    where a dialect differs (how the model is named, extra encoder inputs, error headers)."""

    stream_type = b"text/event-stream; charset=utf-8"

    def __init__(self, name: str, dialect: ModuleType, id_prefix: str, *,
                 echoes_request: bool = False, text_runs: bool = False) -> None:
        self.name = name  # the dialect's name, also ``Request.source``
        self.dialect = dialect
        self.id_prefix = id_prefix
        # The dialect's encoders echo request fields (OpenAI Responses echoes tools etc.).
        self.echoes_request = echoes_request
        # Its stream encoder takes ``TextRun`` events (``Request.text_runs``).
        self.text_runs = text_runs

    def decode(self, data, params: dict) -> Request:
        return self.dialect.decode_request(data)

    def response_options(self, req: Request, call: Call) -> dict:
        return {"request": req} if self.echoes_request else {}

    def stream_options(self, req: Request) -> dict:
        return {"request": req} if self.echoes_request else {}

    def error_headers(self, err: GatewayError) -> dict[str, str]:
        return {}


class BedrockSurface(Surface):
    """Bedrock Runtime: the model id and streaming are in the path; AWS error headers;
    the binary event stream; the response reports its own latency."""

    stream_type = b"application/vnd.amazon.eventstream"

    def decode(self, data, params: dict) -> Request:
        return self.dialect.decode_request(data, params["model_id"],
                                           stream=params["action"] == "converse-stream")

    def response_options(self, req: Request, call: Call) -> dict:
        return {"latency_ms": int((time.perf_counter() - call.t0) * 1000)}

    def stream_options(self, req: Request) -> dict:
        return {}

    def error_headers(self, err: GatewayError) -> dict[str, str]:
        return self.dialect.error_headers(err)


def _route_headers(call: Call, routed: Routed | None) -> dict[str, str]:
    headers = {"x-request-id": call.rid, **call.headers}
    if routed is not None:
        headers["x-modelmart-deployment"] = routed.deployment.name
        headers["x-modelmart-attempts"] = str(routed.attempts)
    return headers


def error_headers(surface: Surface, call: Call, err: GatewayError) -> dict[str, str]:
    headers = {"x-request-id": call.rid, **call.headers, **err.headers,
               **surface.error_headers(err)}
    if err.retry_after is not None:  # rounded up: a client that waits this long is not early
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    return headers


async def send_error(surface: Surface, send: Send, call: Call, err: GatewayError) -> None:
    status, body = surface.dialect.encode_error(err)
    await send_json(send, status, body, error_headers(surface, call, err))


async def handle_chat(app: "App", surface: Surface, scope: Scope, receive: Receive, send: Send,
                      params: dict | None = None) -> None:
    call = Call(rid=new_id(), surface=surface.name, key=None, started=time.time(),
                t0=time.perf_counter())
    try:
        body = await read_body(scope, receive, app.settings.max_body_bytes)
        app.guard.authenticate(scope, call, body)
        req = surface.decode(parse_json(body), params or {})
        req.source = surface.name
        req.text_runs = surface.text_runs
        include_usage = bool(req.extra.pop("include_usage", False))
        await app.guard.admit(call, req)
    except GatewayError as err:
        app.guard.settle(call, usage=None, deployment=None, attempts=0, status="refused",
                         http_status=err.status, error=err.message)
        await send_error(surface, send, call, err)
        return
    except Exception:  # a bug of ours: log it, answer in the caller's dialect
        log.exception("request %s failed", call.rid)
        await send_error(surface, send, call, InternalError("internal error; see the server log"))
        return
    if req.stream:
        await _stream(app, surface, call, req, include_usage, scope, receive, send)
    else:
        await _complete(app, surface, call, req, send)


async def _complete(app: "App", surface: Surface, call: Call, req: Request, send: Send) -> None:
    try:
        resp, routed = await app.router.complete(req)
    except GatewayError as err:
        app.guard.settle(call, usage=None, deployment=None, attempts=getattr(err, "attempts", 1),
                         status="error", http_status=err.status, error=err.message)
        await send_error(surface, send, call, err)
        return
    except Exception:
        log.exception("request %s failed", call.rid)
        err = InternalError("internal error; see the server log")
        app.guard.settle(call, usage=None, deployment=None, attempts=1, status="error",
                         http_status=500, error="internal error")
        await send_error(surface, send, call, err)
        return
    resp.id = surface.id_prefix + call.rid
    resp.created = resp.created or int(time.time())
    record = app.guard.settle(call, usage=resp.usage, deployment=routed.deployment,
                              attempts=routed.attempts, status="ok", http_status=200)
    body = surface.dialect.encode_response(resp, req.model, **surface.response_options(req, call))
    usage = body.get("usage") if isinstance(body, dict) else None
    if record is not None and isinstance(usage, dict):
        # OpenRouter's convention: the request's price to the caller, in USD.
        usage["cost"] = record.price_pico / 10**12  # int / int: the nearest float
    await send_json(send, 200, orjson.dumps(body), _route_headers(call, routed))


async def _stream(app: "App", surface: Surface, call: Call, req: Request, include_usage: bool,
                  scope: Scope, receive: Receive, send: Send) -> None:
    try:
        batches, first, routed = await app.router.stream_batches(req)
    except GatewayError as err:
        app.guard.settle(call, usage=None, deployment=None, attempts=getattr(err, "attempts", 1),
                         status="error", http_status=err.status, error=err.message)
        await send_error(surface, send, call, err)
        return
    encoder = surface.dialect.StreamEncoder(req.model, include_usage=include_usage,
                                            **surface.stream_options(req))
    start = stream_start(_route_headers(call, routed), surface.stream_type)
    await run_stream(receive, scope, send_metered(send, start, app, call, first, batches, encoder,
                                                  surface.id_prefix + call.rid, routed))
