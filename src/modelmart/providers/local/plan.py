"""A canonical request to a generation ``Plan``: prompt tokens, limits, sampling, grammar.

Everything a request can get wrong is found here, before it waits for the model thread.
"""

from __future__ import annotations

import llama_cpp

from modelmart.core.errors import CONTEXT_LENGTH_EXCEEDED, InvalidRequest
from modelmart.core.types import Request

from .generate import Plan, Sampling
from .grammar import grammar_for
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
    # The grammar first: its bounds are checked before anything is built, and a schema too
    # large for them would otherwise be tokenized into the prompt first.
    grammar = grammar_for(model, request, mode, tool_names)
    prompt = model.format_prompt(chat_messages(request, mode))
    return Plan(
        prompt_tokens=prompt,
        max_tokens=_max_tokens(request, options, len(prompt), model.n_ctx),
        stop=list(request.stop),
        sampling=_sampling(request),
        grammar=grammar,
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
