"""GET /v1/models and /v1/models/{id}: OpenAI's list shape, or Anthropic's when the caller
sends ``anthropic-version`` (the Anthropic SDK's ``models.list()`` hits the same path)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from modelmart.catalog import ModelEntry
from modelmart.core.errors import GatewayError
from modelmart.dialects import anthropic_messages, openai_chat

from .http import Receive, Scope, Send, header, send_json

if TYPE_CHECKING:
    from .app import App


def _openai(entry: ModelEntry) -> dict:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


def _anthropic(entry: ModelEntry) -> dict:
    created = datetime.fromtimestamp(entry.created, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": entry.id, "display_name": entry.description or entry.id,
            "created_at": created}


async def list_models(app: "App", scope: Scope, receive: Receive, send: Send) -> None:
    entries = list(app.catalog.models.values())
    if header(scope, b"anthropic-version") is not None:
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
        entry = app.catalog.get(model_id)
    except GatewayError as err:
        dialect = anthropic_messages if anthropic else openai_chat
        status, body = dialect.encode_error(err)
        await send_json(send, status, body)
        return
    await send_json(send, 200, _anthropic(entry) if anthropic else _openai(entry))
