"""Chat Completions request bodies: ``decode_request`` (from clients) and ``encode_request``
(to OpenAI and OpenAI-compatible upstreams)."""

from __future__ import annotations

from typing import Any, Iterable

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request

from ._validate import (
    missing,
    value_error,
    want_bool,
    want_int,
    want_list,
    want_model,
    want_number,
    want_object,
    want_shallow_fields,
    want_str,
)
from .messages_in import decode_messages
from .messages_out import encode_messages
from .tools import (
    decode_response_format,
    decode_tool_choice,
    decode_tools,
    encode_response_format,
    encode_tool_choice,
    encode_tools,
)

# Fields decoded into canonical ones; everything else goes to ``Request.extra`` untouched.
_KNOWN = frozenset(
    "model messages temperature top_p max_tokens max_completion_tokens stop seed n tools "
    "tool_choice parallel_tool_calls response_format stream stream_options user".split()
)
# Our own marker in ``extra``; never sent upstream.
INCLUDE_USAGE = "include_usage"


def decode_request(data: Any) -> Request:
    model = want_model(data)
    get = data.get
    if get("messages") is None:
        raise missing("messages")
    system, messages = decode_messages(data["messages"])
    tools = decode_tools(get("tools"))
    # Optional fields are checked only when sent (most requests send few of them).
    temperature, top_p, seed, user = (get("temperature"), get("top_p"), get("seed"),
                                      get("user"))
    choice, parallel = get("tool_choice"), get("parallel_tool_calls")
    req = Request(
        model=model,
        messages=messages,
        system=system,
        max_tokens=_max_tokens(data),
        temperature=None if temperature is None else want_number(temperature, "temperature", 0, 2),
        top_p=None if top_p is None else want_number(top_p, "top_p", 0, 1),
        stop=_stop(get("stop")),
        seed=None if seed is None else want_int(seed, "seed"),
        tools=tools,
        tool_choice=(None if choice is None and parallel is None
                     else decode_tool_choice(choice, parallel, tools)),
        response_format=decode_response_format(get("response_format")),
        stream=bool(_opt(data, "stream", want_bool)),
        user=None if user is None else want_str(user, "user"),
    )
    if get("n") is not None:
        _check_n(data["n"])
    if not _PASSED_THROUGH_CHECKED.isdisjoint(data):
        _check_passthrough(data)
    req.extra = {k: v for k, v in data.items() if k not in _KNOWN}
    if req.extra:  # most requests have none: not even a call
        want_shallow_fields(req.extra)
    if _include_usage(data, req.stream):
        req.extra[INCLUDE_USAGE] = True
    return req


def _opt(data: dict, key: str, check, *bounds) -> Any:
    value = data.get(key)
    return None if value is None else check(value, key, *bounds)


def _max_tokens(data: dict) -> int | None:
    legacy = _opt(data, "max_tokens", want_int, 1)
    newer = _opt(data, "max_completion_tokens", want_int, 1)
    return newer if newer is not None else legacy


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    items = want_list(raw, "stop")
    if len(items) > 4:
        raise value_error("stop", f"at most 4 stop sequences are allowed, got {len(items)}.")
    return [want_str(s, f"stop[{i}]") for i, s in enumerate(items)]


def _check_n(raw: Any) -> None:
    if raw is not None and want_int(raw, "n") != 1:
        raise value_error("n", f"only n=1 is supported, got {raw}.")


_PASSED_THROUGH_CHECKED = frozenset(
    ("frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "logit_bias"))


def _check_passthrough(data: dict) -> None:
    """The cheap checks OpenAI makes on fields we pass through without interpreting."""
    for key in ("frequency_penalty", "presence_penalty"):
        _opt(data, key, want_number, -2, 2)
    _opt(data, "logprobs", want_bool)
    _opt(data, "top_logprobs", want_int, 0, 20)
    _opt(data, "logit_bias", want_object)


def _include_usage(data: dict, stream: bool) -> bool:
    opts = data.get("stream_options")
    if opts is None:
        return False
    if not stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    opts = want_object(opts, "stream_options")
    flag = opts.get("include_usage")
    return flag is not None and want_bool(flag, "stream_options.include_usage")


# ---- encode ----------------------------------------------------------------------------


def encode_request(
    req: Request, model: str, *, stream: bool, drop: Iterable[str] = ()
) -> dict[str, Any]:
    drop = frozenset(drop)
    out: dict[str, Any] = {k: v for k, v in req.extra.items() if k != INCLUDE_USAGE}
    out["model"] = model
    out["messages"] = encode_messages(req.system, req.messages)
    out.update(_sampling(req, drop))
    out.update(_tooling(req))
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    for key in drop:
        out.pop(key, None)
    return out


def _sampling(req: Request, drop: frozenset[str]) -> dict[str, Any]:
    # Most OpenAI-compatible hosts (vLLM, Ollama, Mistral, Groq) only know max_tokens;
    # an upstream that refuses it (OpenAI reasoning models) lists it in unsupported_params.
    fields: dict[str, Any] = {
        ("max_completion_tokens" if "max_tokens" in drop else "max_tokens"): req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": list(req.stop) or None,
        "seed": req.seed,
        "user": req.user,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _tooling(req: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.tools:
        out["tools"] = encode_tools(req.tools)
    choice = req.tool_choice
    if choice is not None and (req.tools or choice.type == "none"):
        out["tool_choice"] = encode_tool_choice(choice)
        if choice.disable_parallel and req.tools:
            out["parallel_tool_calls"] = False
    if req.response_format is not None:
        out["response_format"] = encode_response_format(req.response_format)
    return out
