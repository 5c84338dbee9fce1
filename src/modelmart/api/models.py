"""GET /v1/models and /v1/models/{id}: OpenAI's list shape, or Anthropic's when the caller
sends ``anthropic-version`` (the Anthropic SDK's ``models.list()`` hits the same path).

Like a model call, a listing needs an API key (``Authorization: Bearer``, ``x-api-key``, or
a SigV4 signature), and shows only the models that key may use; a model the key may not use
is as unknown to it as one the catalog lacks. Errors are in the caller's dialect."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from modelmart.catalog import ModelEntry
from modelmart.core.errors import GatewayError, NotFound
from modelmart.dialects import anthropic_messages, openai_chat
from modelmart.dialects._checks import shown

from .http import Receive, Scope, Send, header, send_json

if TYPE_CHECKING:
    from .app import App


def _openai(entry: ModelEntry) -> dict:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


def _anthropic(entry: ModelEntry) -> dict:
    created = datetime.fromtimestamp(entry.created, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": entry.id, "display_name": entry.description or entry.id,
            "created_at": created}


def _visible(app: "App", scope: Scope) -> dict[str, ModelEntry]:
    """The catalog's models the caller's key may use (all of them when auth is off)."""
    call = app.admission.call("models")  # authentication only: nothing to settle
    call.authenticate(scope)
    call.verify_body(scope, b"")  # a SigV4-signed GET signs an empty body
    key = call.key
    models = app.catalog.models
    if key is None or key.models is None:
        return models
    return {m: models[m] for m in key.models if m in models}


async def list_models(app: "App", scope: Scope, receive: Receive, send: Send) -> None:
    anthropic = header(scope, b"anthropic-version") is not None
    try:
        entries = list(_visible(app, scope).values())
    except GatewayError as err:
        await _send_error(send, anthropic, err)
        return
    if anthropic:
        data = [_anthropic(e) for e in entries]
        body = {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
    else:
        body = {"object": "list", "data": [_openai(e) for e in entries]}
    await send_json(send, 200, body)


async def get_model(app: "App", model_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    anthropic = header(scope, b"anthropic-version") is not None
    try:
        entry = _visible(app, scope).get(model_id)
        if entry is None:
            raise NotFound(f"The model {shown(model_id)} does not exist or this API key may "
                           "not use it.", param="model")
    except GatewayError as err:
        await _send_error(send, anthropic, err)
        return
    await send_json(send, 200, _anthropic(entry) if anthropic else _openai(entry))


async def _send_error(send: Send, anthropic: bool, err: GatewayError) -> None:
    status, body = (anthropic_messages if anthropic else openai_chat).encode_error(err)
    await send_json(send, status, body, err.headers or None)
