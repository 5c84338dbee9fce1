"""Converse requests: client JSON -> canonical ``Request`` and back to upstream JSON.

Unlike the other dialects, the model and streaming are not in the body: the model id is a
path segment (``/model/{modelId}/converse``) and streaming is the other endpoint
(``/converse-stream``). So ``decode_request`` takes both as arguments, and
``encode_request`` returns the body alone; the caller puts the model in the URL.
"""

from __future__ import annotations

from typing import Any, Iterable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Message, Request
from modelmart.dialects._blocks import encode_turns

from . import _check as check
from .blocks import decode_content, encode_block
from .tools import (
    decode_output_config, decode_tool_config, encode_output_config, encode_tool_config,
)

# Top-level Converse fields with no canonical meaning: kept in ``extra`` under their own
# names and sent back at the top level to a Bedrock upstream. Every other key in ``extra``
# is an additionalModelRequestFields entry.
PASS_THROUGH = frozenset({
    "guardrailConfig", "promptVariables", "additionalModelResponseFieldPaths",
    "requestMetadata", "performanceConfig", "serviceTier",
})
_DECODED = frozenset({"messages", "system", "inferenceConfig", "toolConfig",
                      "additionalModelRequestFields", "outputConfig", "modelId"})
_SYSTEM_KNOWN = ("text", "guardContent", "cachePoint")


def decode_request(data: Any, model_id: str, *, stream: bool = False) -> Request:
    """``model_id`` is the (percent-decoded) ``{modelId}`` path segment; ``stream`` is True
    for ``/converse-stream``."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {check.describe(data)}")
    if not isinstance(model_id, str) or not model_id:
        raise check.fail("must not be empty", "modelId")
    unknown = sorted(set(data) - _DECODED - PASS_THROUGH)
    if unknown:
        raise check.fail(f"unknown field(s) {', '.join(unknown)}", None)
    req = Request(model=model_id, messages=_decode_messages(data.get("messages")),
                  stream=stream)
    req.system = _decode_system(data.get("system"))
    if data.get("inferenceConfig") is not None:
        _decode_inference(data["inferenceConfig"], req)
    if data.get("toolConfig") is not None:
        req.tools, req.tool_choice = decode_tool_config(data["toolConfig"])
    if data.get("outputConfig") is not None:
        req.response_format = decode_output_config(data["outputConfig"])
    req.extra = {k: v for k, v in data.items() if k in PASS_THROUGH}
    if req.extra:
        check.shallow_fields(req.extra)
    if data.get("additionalModelRequestFields") is not None:
        _decode_additional(data["additionalModelRequestFields"], req)
    return req


def _decode_messages(value: Any) -> list[Message]:
    if value is None:
        raise check.fail("field required", "messages")
    raw = check.array(value, "messages", nonempty=True)
    out: list[Message] = []
    for i, item in enumerate(raw):
        param = f"messages.{i}"
        data = check.obj(item, param)
        role = check.required(data, "role", f"{param}.role")
        if role not in ("user", "assistant"):
            raise check.fail(f"must be user or assistant, got {check.shown(role)}",
                             f"{param}.role")
        content = check.array(check.required(data, "content", f"{param}.content"),
                              f"{param}.content", nonempty=True)
        msg = Message(role=role, content=decode_content(content, role, f"{param}.content"))
        # Read consecutive turns of one role as one turn, as the Anthropic dialect does.
        if out and out[-1].role == role:
            out[-1].content.extend(msg.content)
        else:
            out.append(msg)
    return out


def _decode_system(value: Any) -> str | None:
    if value is None:
        return None
    parts: list[str] = []
    for i, raw in enumerate(check.array(value, "system")):
        kind, inner = check.union(raw, f"system.{i}", _SYSTEM_KNOWN)
        if kind == "text":
            parts.append(check.string(inner, f"system.{i}.text", nonempty=True))
        elif kind == "guardContent":
            text = check.obj(check.obj(inner, f"system.{i}.guardContent").get("text"),
                             f"system.{i}.guardContent.text")
            parts.append(check.string(text.get("text"), f"system.{i}.guardContent.text.text"))
    return "\n\n".join(parts) or None


def _decode_inference(value: Any, req: Request) -> None:
    data = check.obj(value, "inferenceConfig")
    p = "inferenceConfig"
    if data.get("maxTokens") is not None:
        req.max_tokens = check.integer(data["maxTokens"], f"{p}.maxTokens", minimum=1)
    if data.get("temperature") is not None:
        req.temperature = check.number(data["temperature"], f"{p}.temperature", low=0, high=1)
    if data.get("topP") is not None:
        req.top_p = check.number(data["topP"], f"{p}.topP", low=0, high=1)
    if data.get("stopSequences") is not None:
        stops = check.array(data["stopSequences"], f"{p}.stopSequences")
        req.stop = [check.string(s, f"{p}.stopSequences.{i}", nonempty=True)
                    for i, s in enumerate(stops)]


def _decode_additional(value: Any, req: Request) -> None:
    """Model-specific fields. ``top_k`` (Anthropic, Mistral) and Nova's
    ``inferenceConfig.topK`` are the canonical top_k; the rest is passed through."""
    p = "additionalModelRequestFields"
    fields = dict(check.shallow(check.obj(value, p), p))
    if fields.get("top_k") is not None:
        req.top_k = check.integer(fields.pop("top_k"), f"{p}.top_k", minimum=0)
    nova = fields.get("inferenceConfig")
    if isinstance(nova, dict) and nova.get("topK") is not None:
        nova = dict(nova)
        req.top_k = check.integer(nova.pop("topK"), f"{p}.inferenceConfig.topK", minimum=0)
        if nova:
            fields["inferenceConfig"] = nova
        else:
            del fields["inferenceConfig"]
    clash = sorted(PASS_THROUGH.intersection(fields))
    if clash:
        raise check.fail(f"{', '.join(clash)} belongs at the top level of the request", p)
    req.extra.update(fields)


# ---- canonical -> wire ------------------------------------------------------------------


def encode_request(req: Request, model: str, *, stream: bool = False,
                   drop: Iterable[str] = ()) -> dict:
    """The Converse body for ``model``. ``stream`` does not change the body (it chooses the
    endpoint); it is accepted so every dialect is called alike. ``drop`` names fields the
    deployment rejects: top-level, inferenceConfig or additionalModelRequestFields keys."""
    drop = frozenset(drop)
    body: dict[str, Any] = {"messages": encode_messages(req.messages)}
    if req.system:
        body["system"] = [{"text": req.system}]
    inference = _encode_inference(req)
    if inference:
        body["inferenceConfig"] = inference
    tools = encode_tool_config(req.tools, req.tool_choice, req.messages)
    if tools is not None:
        body["toolConfig"] = tools
    if req.response_format is not None:
        output = encode_output_config(req.response_format, drop)
        if output is not None:
            body["outputConfig"] = output
    additional = _encode_additional(req, model)
    if additional:
        body["additionalModelRequestFields"] = additional
    body.update({k: v for k, v in req.extra.items() if k in PASS_THROUGH})
    return _drop(body, drop)


def _encode_inference(req: Request) -> dict:
    out: dict[str, Any] = {}
    if req.max_tokens is not None:
        out["maxTokens"] = req.max_tokens
    if req.temperature is not None:
        # Converse caps temperature at 1 where OpenAI allows 2; the cap is the nearest
        # value the upstream accepts.
        out["temperature"] = min(max(req.temperature, 0.0), 1.0)
    if req.top_p is not None:
        out["topP"] = req.top_p
    if req.stop:
        out["stopSequences"] = list(req.stop)
    return out


def _encode_additional(req: Request, model: str) -> dict:
    out = {k: v for k, v in req.extra.items() if k not in PASS_THROUGH}
    if req.top_k is not None:
        if "amazon.nova" in model:
            # Nova takes top_k in its own inferenceConfig inside the additional fields.
            nested = out.get("inferenceConfig")
            out["inferenceConfig"] = {**(nested if isinstance(nested, dict) else {}),
                                      "topK": req.top_k}
        else:
            out["top_k"] = req.top_k
    return out


def _drop(body: dict, drop: frozenset) -> dict:
    for key in drop.difference({"messages"}):
        body.pop(key, None)
        for nested in ("inferenceConfig", "additionalModelRequestFields"):
            if isinstance(body.get(nested), dict):
                body[nested].pop(key, None)
                if not body[nested]:
                    del body[nested]
    return body


def encode_messages(messages: list[Message]) -> list[dict]:
    return encode_turns(messages, encode_block)
