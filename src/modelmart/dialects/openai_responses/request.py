"""``POST /v1/responses`` request bodies from clients.

We keep no conversation state: ``store`` is accepted and ignored (nothing is stored),
and anything that needs stored state (``previous_response_id``, ``conversation``,
``background``, ``prompt``) is refused with a 400 that says so.
"""

from __future__ import annotations

from typing import Any, Iterable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request
from modelmart.dialects.openai_chat._validate import (
    missing, want_bool, want_int, want_number, want_object, want_shallow_fields, want_str,
)

from .items import decode_input
from .tools import decode_text_format, decode_tool_choice, decode_tools

# Fields decoded into canonical ones; everything else stays in ``Request.extra``.
_KNOWN = frozenset(
    "model input instructions tools tool_choice parallel_tool_calls max_output_tokens "
    "temperature top_p text stream store user".split()
)
_STATEFUL = {
    "previous_response_id": "'previous_response_id' is not supported: this gateway keeps no "
                            "conversation state; send the whole conversation in 'input'.",
    "conversation": "'conversation' is not supported: this gateway keeps no conversation "
                    "state; send the whole conversation in 'input'.",
    "background": "'background' responses are not supported.",
    "prompt": "Stored prompts ('prompt') are not supported; send 'instructions' and 'input'.",
}


def decode_request(data: Any) -> Request:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    _refuse_stateful(data)
    model = data.get("model")
    if model is None:
        raise missing("model")
    want_str(model, "model", nonempty=True)
    if data.get("input") is None:
        raise missing("input")
    system, messages = decode_input(data["input"])
    instructions = _opt(data, "instructions", want_str)
    if instructions:
        system = instructions + ("\n\n" + system if system else "")
    tools = decode_tools(data.get("tools"))
    _opt(data, "store", want_bool)  # accepted; nothing is ever stored
    if data.get("metadata") is not None:
        want_object(data["metadata"], "metadata")
    return Request(
        model=model,
        messages=messages,
        system=system,
        max_tokens=_opt(data, "max_output_tokens", want_int, 1),
        temperature=_opt(data, "temperature", want_number, 0, 2),
        top_p=_opt(data, "top_p", want_number, 0, 1),
        tools=tools,
        tool_choice=decode_tool_choice(data.get("tool_choice"), data.get("parallel_tool_calls"), tools),
        response_format=decode_text_format(data.get("text")),
        stream=bool(_opt(data, "stream", want_bool)),
        user=_opt(data, "user", want_str),
        extra=want_shallow_fields({k: v for k, v in data.items() if k not in _KNOWN}),
    )


def _refuse_stateful(data: dict) -> None:
    for key, message in _STATEFUL.items():
        if data.get(key) not in (None, False):
            raise InvalidRequest(message, param=key)


def _opt(data: dict, key: str, check, *bounds) -> Any:
    value = data.get(key)
    return None if value is None else check(value, key, *bounds)


def encode_request(req: Request, model: str, *, stream: bool, drop: Iterable[str] = ()) -> dict:
    raise InvalidRequest("The OpenAI Responses API is not supported as an upstream yet.")
