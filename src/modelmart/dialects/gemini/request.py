"""``generateContent`` request bodies: ``decode_request`` (from Gemini clients; the model
id and streaming come from the URL) and ``encode_request`` (to Gemini upstreams)."""

from __future__ import annotations

from typing import Any, Iterable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request

from ._check import array, field, obj, shallow, snake, string
from .config import (
    decode_generation_config, decode_tool_config, decode_tools,
    encode_generation_config, encode_tool_config, encode_tools,
)
from .parts import decode_contents, encode_contents

_KNOWN = ("contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model")
# The key in Request.extra holding generationConfig fields with no canonical meaning.
GEN_EXTRA = "generationConfig"


def decode_request(data: Any, model_id: str, *, stream: bool = False) -> Request:
    """``model_id`` is the ``{model}`` of ``/v1beta/models/{model}:generateContent``;
    ``stream`` is True for ``:streamGenerateContent``."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # No client surface speaks Gemini yet, so no hot path: the whole body is bounded at once
    # rather than each value passed on unread (function args and parameters, extra fields).
    shallow(data, "request")
    model = model_id.removeprefix("models/")
    if not model:
        raise InvalidRequest("The model name is missing from the URL.", param="model")
    tools = decode_tools(data.get("tools"))
    choice, tools = decode_tool_config(field(data, "toolConfig"), tools)
    sampling, gen_extra = decode_generation_config(field(data, "generationConfig"))
    req = Request(
        model=model,
        messages=decode_contents(data.get("contents")),
        system=_system(field(data, "systemInstruction")),
        tools=tools,
        tool_choice=choice,
        stream=stream,
        **sampling,
    )
    known = set(_KNOWN) | {snake(k) for k in _KNOWN}
    req.extra = {k: v for k, v in data.items() if k not in known}
    if gen_extra:
        req.extra[GEN_EXTRA] = gen_extra
    return req


def _system(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):  # the SDKs accept a bare string; be as kind
        return raw
    parts = array(field(obj(raw, "systemInstruction"), "parts"), "systemInstruction.parts")
    texts = [string(obj(p, f"systemInstruction.parts[{i}]").get("text"),
                    f"systemInstruction.parts[{i}].text") for i, p in enumerate(parts)]
    return "\n".join(texts) if texts else None


# ---- encode ----------------------------------------------------------------------------


def encode_request(
    req: Request, model: str, *, stream: bool, drop: Iterable[str] = ()
) -> dict[str, Any]:
    """The body for ``/models/{model}:generateContent``; ``model`` and ``stream`` belong in
    the URL, so they do not appear here. ``drop`` names top-level or generationConfig
    fields (camelCase) this upstream refuses."""
    drop = frozenset(drop)
    extra = dict(req.extra)
    gen_extra = extra.pop(GEN_EXTRA, None) or {}
    out: dict[str, Any] = dict(extra)
    out["contents"] = encode_contents(req.messages)
    if req.system:
        out["systemInstruction"] = {"parts": [{"text": req.system}]}
    if req.tools:
        out["tools"] = encode_tools(req.tools)
    if req.tool_choice is not None and (req.tools or req.tool_choice.type == "none"):
        out["toolConfig"] = encode_tool_config(req.tool_choice)
    gen = {k: v for k, v in encode_generation_config(req, gen_extra).items() if k not in drop}
    if gen:
        out["generationConfig"] = gen
    for key in drop:
        out.pop(key, None)
    return out
