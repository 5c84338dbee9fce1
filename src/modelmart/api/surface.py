"""The request path shared by every chat surface: decode, route, encode.

A surface is a dialect module plus the id prefix its clients expect. Errors anywhere are
encoded in the caller's own dialect; nothing a client sends produces a traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, AsyncIterator

from modelmart.core.errors import GatewayError, InternalError
from modelmart.core.ids import new_id
from modelmart.core.types import MessageStart, StreamEvent
from modelmart.routing import Routed

from .http import Receive, Scope, Send, parse_json, read_body, send_json, send_stream

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.api")


@dataclass(frozen=True, slots=True)
class Surface:
    name: str  # the dialect's name, also ``Request.source``
    dialect: ModuleType
    id_prefix: str


def _route_headers(rid: str, routed: Routed | None) -> dict[str, str]:
    headers = {"x-request-id": rid}
    if routed is not None:
        headers["x-modelmart-deployment"] = routed.deployment.name
        headers["x-modelmart-attempts"] = str(routed.attempts)
    return headers


def error_headers(rid: str, err: GatewayError) -> dict[str, str]:
    headers = {"x-request-id": rid, **err.headers}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    return headers


async def handle_chat(app: "App", surface: Surface, scope: Scope, receive: Receive, send: Send) -> None:
    rid = new_id()
    try:
        data = parse_json(await read_body(scope, receive, app.settings.max_body_bytes))
        req = surface.dialect.decode_request(data)
        req.source = surface.name
        include_usage = bool(req.extra.pop("include_usage", False))
        if req.stream:
            events, first, routed = await app.router.stream(req)
            encoder = surface.dialect.StreamEncoder(req.model, include_usage=include_usage)
            frames = _frames(first, events, encoder, surface.id_prefix + rid)
            await send_stream(send, receive, frames, _route_headers(rid, routed))
            return
        resp, routed = await app.router.complete(req)
        resp.id = surface.id_prefix + rid
        resp.created = resp.created or int(time.time())
        body = surface.dialect.encode_response(resp, req.model)
        await send_json(send, 200, body, _route_headers(rid, routed))
    except GatewayError as err:
        status, body = surface.dialect.encode_error(err)
        await send_json(send, status, body, error_headers(rid, err))
    except Exception:  # a bug of ours: log it, answer in the caller's dialect
        log.exception("request %s failed", rid)
        status, body = surface.dialect.encode_error(InternalError("internal error; see the server log"))
        await send_json(send, status, body, {"x-request-id": rid})


async def _frames(
    first: StreamEvent, events: AsyncIterator[StreamEvent], encoder, msg_id: str
) -> AsyncIterator[bytes]:
    """Encode the stream; a failure after the first byte becomes the dialect's error event."""
    try:
        if isinstance(first, MessageStart):
            first.id = msg_id
            first.created = first.created or int(time.time())
        yield encoder.event(first)
        async for event in events:
            if isinstance(event, MessageStart):
                event.id = msg_id
            yield encoder.event(event)
        yield encoder.end()
    except GatewayError as err:
        yield encoder.error(err)
    except Exception:
        log.exception("stream %s failed", msg_id)
        yield encoder.error(InternalError("internal error during the stream; see the server log"))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
