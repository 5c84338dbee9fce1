"""Messages API requests: client JSON -> canonical ``Request`` and back to upstream JSON."""

from __future__ import annotations

from typing import Any, Iterable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Message, Request, TextBlock
from modelmart.dialects._blocks import encode_turns

from . import _check as check
from .blocks import decode_content, encode_block
from .tools import (
    decode_output_format, decode_tool_choice, decode_tools, encode_output_format, encode_tool,
    encode_tool_choice,
)

# Anthropic requires max_tokens; canonical requests from other dialects may leave it unset.
DEFAULT_MAX_TOKENS = 4096
_KNOWN_FIELDS = frozenset({
    "model", "messages", "system", "max_tokens", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "output_format",
})
_REQUIRED_FIELDS = ("model", "messages", "max_tokens")


def decode_request(data: Any) -> Request:
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {check.describe(data)}")
    model = check.string(check.required(data, "model", "model"), "model", nonempty=True)
    max_tokens = check.integer(check.required(data, "max_tokens", "max_tokens"), "max_tokens",
                               minimum=1)
    req = Request(model=model, messages=_decode_messages(data.get("messages")),
                  max_tokens=max_tokens)
    req.system = _decode_system(data.get("system"))
    _decode_sampling(data, req)
    if data.get("tools") is not None:
        req.tools = decode_tools(data["tools"])
    if data.get("tool_choice") is not None:
        req.tool_choice = decode_tool_choice(data["tool_choice"], req.tools)
    if data.get("stream") is not None:
        req.stream = check.boolean(data["stream"], "stream")
    req.user = _decode_user(data.get("metadata"))
    req.extra = {k: v for k, v in data.items() if k not in _KNOWN_FIELDS}
    if req.extra:  # most requests have none: not even a call
        check.shallow_fields(req.extra)
    _decode_output_settings(data, req)
    return req


def _decode_messages(value: Any) -> list[Message]:
    if value is None:
        raise check.fail("field required", "messages")
    raw = check.array(value, "messages")
    if not raw:
        raise check.fail("at least one message is required", "messages")
    out: list[Message] = []
    for i, item in enumerate(raw):
        # The usual turn, {"role", "content": "text"}, without building its error paths.
        if (type(item) is dict and len(item) == 2 and type(content := item.get("content")) is str
                and content and (role := item.get("role")) in ("user", "assistant")):
            msg = Message(role, [TextBlock(content)])
        else:
            msg = _decode_message(item, f"messages.{i}", last=i == len(raw) - 1)
        # The API accepts consecutive turns of one role and reads them as one turn.
        if out and out[-1].role == msg.role:
            out[-1].content.extend(msg.content)
        else:
            out.append(msg)
    return out


def _decode_message(item: Any, param: str, *, last: bool) -> Message:
    data = check.obj(item, param)
    role = check.required(data, "role", f"{param}.role")
    if role == "system":
        raise check.fail("unexpected role 'system'; put system prompts in the top-level "
                         "`system` field", f"{param}.role")
    if role not in ("user", "assistant"):
        raise check.fail(f"unknown role {check.shown(role)}; expected user or assistant",
                         f"{param}.role")
    content = check.required(data, "content", f"{param}.content")
    if not content and not (last and role == "assistant"):
        raise check.fail("all messages must have non-empty content except for the optional "
                         "final assistant message", param)
    return Message(role=role, content=decode_content(content, role, f"{param}.content"))


def _decode_system(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    parts = []
    for i, raw in enumerate(check.array(value, "system")):
        block = check.obj(raw, f"system.{i}")
        if block.get("type") != "text":
            raise check.fail(f"system blocks must be text, got {check.shown(block.get('type'))}",
                             f"system.{i}.type")
        parts.append(check.string(check.required(block, "text", f"system.{i}.text"),
                                  f"system.{i}.text"))
    return "\n\n".join(parts) or None


def _decode_sampling(data: dict, req: Request) -> None:
    if data.get("temperature") is not None:
        req.temperature = check.number(data["temperature"], "temperature", low=0, high=1)
    if data.get("top_p") is not None:
        req.top_p = check.number(data["top_p"], "top_p", low=0, high=1)
    if data.get("top_k") is not None:
        req.top_k = check.integer(data["top_k"], "top_k", minimum=0)
    if data.get("stop_sequences") is not None:
        stops = check.array(data["stop_sequences"], "stop_sequences")
        req.stop = [check.string(s, f"stop_sequences.{i}", nonempty=True)
                    for i, s in enumerate(stops)]


def _decode_user(value: Any) -> str | None:
    if value is None:
        return None
    user = check.obj(value, "metadata").get("user_id")
    return None if user is None else check.string(user, "metadata.user_id")


def _decode_output_settings(data: dict, req: Request) -> None:
    """Structured outputs become the canonical response format; the rest of
    ``output_config`` (effort, ...) passes through in ``extra``."""
    if data.get("output_format") is not None:
        req.response_format = decode_output_format(data["output_format"], "output_format")
    config = req.extra.get("output_config")
    if isinstance(config, dict) and config.get("format") is not None:
        req.response_format = decode_output_format(config["format"], "output_config.format")
        rest = {k: v for k, v in config.items() if k != "format"}
        if rest:
            req.extra["output_config"] = rest
        else:
            del req.extra["output_config"]


# ---- canonical -> wire ------------------------------------------------------------------


def encode_request(req: Request, model: str, *, stream: bool,
                   drop: Iterable[str] = ()) -> dict:
    drop = frozenset(drop)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": encode_messages(req.messages),
    }
    if req.system:
        body["system"] = req.system
    _encode_sampling(req, body)
    if req.tools:
        body["tools"] = [encode_tool(t) for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = encode_tool_choice(req.tool_choice)
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if stream:
        body["stream"] = True
    for key, value in req.extra.items():
        body.setdefault(key, value)
    _encode_output_format(req, body, drop)
    for key in drop.difference(_REQUIRED_FIELDS):
        body.pop(key, None)
    return body


def _encode_sampling(req: Request, body: dict) -> None:
    if req.temperature is not None:
        # Anthropic caps temperature at 1 where OpenAI allows 2; the cap is the nearest
        # value the upstream accepts.
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = list(req.stop)


def _encode_output_format(req: Request, body: dict, drop: frozenset) -> None:
    if req.response_format is None:
        return
    fmt = encode_output_format(req.response_format, drop)
    if fmt is not None:
        body["output_config"] = {**(body.get("output_config") or {}), "format": fmt}


def encode_messages(messages: list[Message]) -> list[dict]:
    return encode_turns(messages, encode_block)
