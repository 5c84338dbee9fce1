"""Where AWS clients' requests go, beyond Converse (``app.py`` routes that): InvokeModel,
the control plane's model discovery, and AWS-shaped answers for what is not served, so
boto3 always shows a message (``An error occurred (ValidationException) when calling the
CountTokens operation: ...``) rather than an empty 404.

``dispatch`` is called for requests no other route took; it answers, and returns True, for
paths under Bedrock's operations and for any SigV4-signed request.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from modelmart.core.errors import GatewayError, InvalidRequest, NotFound, RequestTooLarge
from modelmart.dialects import bedrock_converse
from modelmart.dialects.bedrock_invoke import model_id_of

from .bedrock_control import PREFIX as CONTROL_PREFIX, handle_control
from .bedrock_invoke import handle_invoke
from .http import Receive, Scope, Send, header, read_body, send_json

if TYPE_CHECKING:
    from .app import App

# Split on the raw path: a model id may be an ARN, whose '/' is sent as %2F.
_RUNTIME = re.compile(rb"/model/([^/]+)/([A-Za-z-]+)")
_INVOKE = {b"invoke": False, b"invoke-with-response-stream": True}
_BEDROCK_PREFIXES = ("/model/", "/guardrail/", "/async-invoke", CONTROL_PREFIX)
_UNSERVED = {
    b"count-tokens": "CountTokens is not available on this gateway yet; the usage of an "
                     "answer (Converse's usage, InvokeModel's "
                     "x-amzn-bedrock-input-token-count header) counts its input tokens.",
    b"invoke-with-bidirectional-stream": "InvokeModelWithBidirectionalStream (speech "
                                         "models) is not available on this gateway.",
}
_GUARDRAILS = ("ApplyGuardrail is not available on this gateway: it has no Bedrock "
               "guardrails.")


async def dispatch(app: "App", scope: Scope, receive: Receive, send: Send) -> bool:
    path, method = scope["path"], scope["method"]
    if not path.startswith(_BEDROCK_PREFIXES) and not _signed(scope):
        return False
    if path.startswith(CONTROL_PREFIX) and path[len(CONTROL_PREFIX):][:1] in ("", "/"):
        await handle_control(app, scope, receive, send)
        return True
    match = _RUNTIME.fullmatch(scope.get("raw_path") or path.encode())
    if match is not None and method == "POST":
        operation = match.group(2)
        if operation in _INVOKE:
            model_id = model_id_of(match.group(1).decode("latin-1"))
            await handle_invoke(app, scope, receive, send, model_id, _INVOKE[operation])
            return True
        if operation in _UNSERVED:
            await _refuse(app, scope, receive, send, InvalidRequest(_UNSERVED[operation]))
            return True
    if method == "POST" and path.startswith("/guardrail/") and path.endswith("/apply"):
        await _refuse(app, scope, receive, send, InvalidRequest(_GUARDRAILS))
        return True
    await _refuse(app, scope, receive, send, _unknown(method, path))
    return True


def _signed(scope: Scope) -> bool:
    value = header(scope, b"authorization")
    return value is not None and value.startswith(b"AWS4-HMAC-SHA256")


def _unknown(method: str, path: str) -> GatewayError:
    return NotFound(f"No operation for {method} {path} on this gateway. Served: Converse, "
                    "ConverseStream, InvokeModel, InvokeModelWithResponseStream "
                    "(bedrock-runtime); ListFoundationModels, GetFoundationModel (bedrock).",
                    headers={"x-amzn-errortype": "UnknownOperationException"})


async def _refuse(app: "App", scope: Scope, receive: Receive, send: Send,
                  err: GatewayError) -> None:
    try:
        # Read what the client sends first: answering before it would close the connection
        # on a client still sending, which boto3 reports as a connection error, not this.
        await read_body(scope, receive, app.settings.max_body_bytes)
    except RequestTooLarge:
        pass
    status, body = bedrock_converse.encode_error(err)
    await send_json(send, status, body, bedrock_converse.error_headers(err))
