"""``POST /v1/messages/count_tokens`` (Anthropic's shape): how many input tokens a Messages
request would be, counted by the model's first deployment when it can count:

- the bundled model: exactly, with its own chat template and tokenizer (what a completion
  reports as its input tokens);
- Anthropic: Anthropic's own count API; Bedrock: its ``CountTokens`` API;
- anything else, or an upstream whose count failed: an estimate (``metering/bounds.py``,
  about four characters a token), marked ``x-modelmart-estimated: true``, with the upper
  bound budgets reserve in ``x-modelmart-input-token-bound``.

Counting is free and leaves no ledger row, as at Anthropic; the key must be allowed the
model. Errors are Anthropic's error bodies."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from modelmart.core.errors import GatewayError, InternalError, PermissionDenied
from modelmart.core.types import Request
from modelmart.dialects import anthropic_messages
from modelmart.metering.bounds import input_token_bound, input_token_estimate

from .admission import Admission
from .http import Receive, Scope, Send, parse_json, read_body, send_json

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.api")
PATH = "/v1/messages/count_tokens"


def count_tokens_routes(app: "App") -> dict:
    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        await handle_count_tokens(app, scope, receive, send)
    return {("POST", PATH): handler}


async def handle_count_tokens(app: "App", scope: Scope, receive: Receive, send: Send) -> None:
    try:
        key = Admission._accept(app.admission.key_for(scope)) if app.settings.auth else None
        body = await read_body(scope, receive, app.settings.max_body_bytes)
        req = anthropic_messages.decode_count_request(parse_json(body))
        req.source = "anthropic"
        entry = app.catalog.get(req.model)
        if key is not None and key.models is not None and req.model not in key.models:
            raise PermissionDenied(f"This API key may not use the model '{req.model}'.",
                                   param="model")
        tokens, headers = await count(app, entry.deployments[0], req)
    except GatewayError as err:
        status, data = anthropic_messages.encode_error(err)
        await send_json(send, status, data)
        return
    except Exception:  # a bug of ours: logged, answered in Anthropic's shape
        log.exception("counting tokens failed")
        status, data = anthropic_messages.encode_error(InternalError("internal error"))
        await send_json(send, status, data)
        return
    await send_json(send, 200, anthropic_messages.encode_token_count(tokens), headers)


async def count(app: "App", deployment, req: Request) -> tuple[int, dict[str, str]]:
    """(input tokens, response headers) for ``req`` as ``deployment`` would see it."""
    headers = {"x-modelmart-deployment": deployment.name}
    provider = app.providers.get(deployment.name)
    counter = getattr(provider, "count_input_tokens", None)
    if counter is not None:
        try:
            return await counter(req), headers
        except GatewayError as err:
            if err.status < 500 and err.status not in (401, 403, 429):
                raise  # the request itself is wrong: say so, as the upstream did
            log.warning("token count by %s failed (%s); answering an estimate",
                        deployment.name, err.message)
    headers["x-modelmart-estimated"] = "true"
    headers["x-modelmart-input-token-bound"] = str(input_token_bound(req))
    return input_token_estimate(req), headers
