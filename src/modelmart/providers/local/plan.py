"""A canonical request to a generation ``Plan``: prompt tokens, limits, sampling, grammar.

Everything a request can get wrong is found here, before it waits for the model thread.
"""

from __future__ import annotations

import json

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from modelmart.core.errors import CONTEXT_LENGTH_EXCEEDED, InvalidRequest
from modelmart.core.types import Request

from .generate import Plan, Sampling
from .model import LoadedModel, LocalOptions
from .prompt import chat_messages

# SmolLM2's model card recommends these; llama.cpp's own defaults (0.8 / 0.95) make a
# 135M model ramble.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.9
DEFAULT_TOP_K = 40


def make_plan(model: LoadedModel, request: Request, options: LocalOptions, name: str) -> Plan:
    if request.needs_images():
        raise InvalidRequest(f"model {name} does not accept images", param="messages")
    mode = tools_mode(request)
    tool_names = _allowed_tools(request) if mode != "none" else []
    prompt = model.format_prompt(chat_messages(request, mode))
    return Plan(
        prompt_tokens=prompt,
        max_tokens=_max_tokens(request, options, len(prompt), model.n_ctx),
        stop=list(request.stop),
        sampling=_sampling(request),
        grammar=_grammar(model, request, mode, tool_names),
        tool_names=tool_names,
        forced_tool=mode == "forced",
    )


def prompt_tokens(model: LoadedModel, request: Request, name: str) -> int:
    """How many tokens the prompt of ``request`` is: the same rendering and tokenizing as
    ``make_plan``, which is what a completion reports as its input tokens."""
    if request.needs_images():
        raise InvalidRequest(f"model {name} does not accept images", param="messages")
    return len(model.format_prompt(chat_messages(request, tools_mode(request))))


def tools_mode(request: Request) -> str:
    """"forced": the answer must be a tool call; "auto": it may be; "none": tools ignored."""
    choice = request.tool_choice.type if request.tool_choice else "auto"
    if not request.tools or choice == "none":
        return "none"
    return "forced" if choice in ("any", "tool") else "auto"


def _allowed_tools(request: Request) -> list[str]:
    names = [t.name for t in request.tools]
    choice = request.tool_choice
    if choice is None or choice.type != "tool":
        return names
    if choice.name not in names:
        raise InvalidRequest(
            f"tool_choice names {choice.name!r}, which is not among the tools", param="tool_choice"
        )
    return [choice.name]


def _max_tokens(request: Request, options: LocalOptions, n_prompt: int, n_ctx: int) -> int:
    if n_prompt >= n_ctx:
        raise InvalidRequest(
            f"prompt is {n_prompt} tokens; this model's context window is {n_ctx} tokens",
            param="messages", code=CONTEXT_LENGTH_EXCEEDED,
        )
    wanted = request.max_tokens if request.max_tokens is not None else options.default_max_tokens
    if wanted < 1:
        raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
    return min(wanted, n_ctx - n_prompt)  # the answer must fit the context with the prompt


def _sampling(request: Request) -> Sampling:
    seed = request.seed if request.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
    return Sampling(
        temperature=_or(request.temperature, DEFAULT_TEMPERATURE),
        top_p=_or(request.top_p, DEFAULT_TOP_P),
        top_k=_or(request.top_k, DEFAULT_TOP_K),
        seed=seed & 0xFFFFFFFF,  # llama.cpp seeds are uint32
    )


def _or(value, default):
    return default if value is None else value


def _grammar(model: LoadedModel, request: Request, mode: str, tools: list[str]) -> str | None:
    if mode == "forced":
        return _checked(model, _schema_gbnf(_tool_call_schema(request, tools), "tools"))
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JSON_GBNF
    return _checked(model, _schema_gbnf(fmt.schema or {"type": "object"}, "response_format"))


def _tool_call_schema(request: Request, allowed: list[str]) -> dict:
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.input_schema},
            "required": ["name", "arguments"],
        }
        for t in request.tools
        if t.name in allowed
    ]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def _schema_gbnf(schema: dict, param: str) -> str:
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as err:  # the converter raises bare errors on schemas it cannot do
        raise InvalidRequest(f"unsupported JSON schema: {err}", param=param) from err


def _checked(model: LoadedModel, gbnf: str) -> str:
    """Parses the grammar once here: llama.cpp given a bad one mid-generation would crash."""
    vocab = model.llama._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if not sampler:
        raise InvalidRequest("could not build a grammar for this JSON schema")
    llama_cpp.llama_sampler_free(sampler)
    return gbnf
