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
from modelmart.core.types import Request
from modelmart.routing import Routed

from .admission import Call
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
                 echoes_request: bool = False) -> None:
        self.name = name  # the dialect's name, also ``Request.source``
        self.dialect = dialect
        self.id_prefix = id_prefix
        # The dialect's encoders echo request fields (OpenAI Responses echoes tools etc.).
        self.echoes_request = echoes_request

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


class GeminiSurface(Surface):
    """Gemini's ``generateContent``: the model and streaming are in the path
    (``/v1beta/models/{model}:streamGenerateContent?alt=sse``)."""

    def decode(self, data, params: dict) -> Request:
        return self.dialect.decode_request(data, params["model_id"],
                                           stream=params["action"] == "streamGenerateContent")

    def stream_options(self, req: Request) -> dict:
        return {}


def _route_headers(call: Call, routed: Routed | None) -> dict[str, str]:
    headers = {"x-request-id": call.rid, **call.headers}
    if routed is not None:
        headers["x-modelmart-deployment"] = routed.deployment.name
        headers["x-modelmart-attempts"] = str(routed.attempts)
        if routed.basis is not None:  # cheapest-within-gap: the evaluation run it rests on
            headers["x-modelmart-route-basis"] = routed.basis
    return headers


def error_headers(surface: Surface, call: Call, err: GatewayError) -> dict[str, str]:
    headers = {"x-request-id": call.rid, **call.headers, **err.headers,
               **surface.error_headers(err)}
    seconds = err.retry_after
    if seconds is not None and seconds == seconds and seconds != float("inf"):  # not NaN/inf
        # Rounded up: a client that waits this long is not early.
        headers["retry-after"] = str(max(1, math.ceil(min(seconds, 86400.0))))
    return headers


async def send_error(surface: Surface, send: Send, call: Call, err: GatewayError) -> None:
    status, body = surface.dialect.encode_error(err)
    await send_json(send, status, body, error_headers(surface, call, err))


async def handle_chat(app: "App", surface: Surface, scope: Scope, receive: Receive, send: Send,
                      params: dict | None = None) -> None:
    metrics = app.metrics
    metrics.in_flight += 1
    async with app.admission.call(surface.name) as call:  # settles on every way out
        sent = _Watched(send)
        try:
            req, include_usage = await _admit(app, surface, call, scope, receive, params)
            if req.stream:
                await _stream(app, surface, call, req, include_usage, scope, receive, sent)
            else:
                await _complete(app, surface, call, req, sent)
        except GatewayError as err:
            call.fail(err)
            if not sent.started:
                await send_error(surface, send, call, err)
        except Exception:  # a bug of ours: log it, answer in the caller's dialect
            log.exception("request %s failed", call.rid)
            call.settle(status="error", http_status=500, error="internal error",
                        attempts=1 if call.admitted else 0)
            if not sent.started:
                await send_error(surface, send, call,
                                 InternalError("internal error; see the server log"))
        finally:
            metrics.in_flight -= 1


class _Watched:
    """``send``, noting whether the response has started (after that an error can only end
    it, in the dialect's own way, not replace it)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send, self.started = send, False

    async def __call__(self, message: dict) -> None:
        self.started = True
        await self.send(message)


async def _admit(app: "App", surface: Surface, call: Call, scope: Scope, receive: Receive,
                 params: dict | None) -> tuple[Request, bool]:
    """Authenticate from the headers, then read and decode the body, then admit."""
    call.authenticate(scope)
    body = await read_body(scope, receive, app.settings.max_body_bytes)
    call.verify_body(scope, body)
    req = surface.decode(parse_json(body), params or {})
    req.source = surface.name
    include_usage = bool(req.extra.pop("include_usage", False))
    await call.admit(req)
    return req, include_usage


async def _complete(app: "App", surface: Surface, call: Call, req: Request, send: Send) -> None:
    try:
        resp, routed = await app.router.complete(req)
    except GatewayError as err:
        call.fail(err)
        await send_error(surface, send, call, err)
        return
    resp.id = surface.id_prefix + call.rid
    resp.created = resp.created or int(time.time())
    record = call.settle(usage=resp.usage, deployment=routed.deployment,
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
        call.fail(err)
        await send_error(surface, send, call, err)
        return
    try:
        encoder = surface.dialect.StreamEncoder(req.model, include_usage=include_usage,
                                                **surface.stream_options(req))
        start = stream_start(_route_headers(call, routed), surface.stream_type)
    except BaseException:
        routed.finish(False)
        await batches.aclose()  # type: ignore[attr-defined]
        raise
    app.metrics.streams_open += 1
    try:
        await run_stream(receive, scope, send_metered(send, start, call, first, batches,
                                                      encoder, surface.id_prefix + call.rid,
                                                      routed))
    finally:
        app.metrics.streams_open -= 1
