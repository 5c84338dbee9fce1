"""The bundled model's side of a request, up to the first token: ``make_plan`` formats the
prompt, checks limits and builds the JSON-schema grammar (structured output and forced tool
calls). Fed mutated schemas (nasty repetition counts, random patterns), and mutated client
requests of each dialect as their decoders let them through; each must give a plan or a
400. Another exception is a 500, and a crash here (llama.cpp once segfaulted on a pattern)
takes the test run down with it. No token is generated: that is what keeps this fast."""

from __future__ import annotations

import copy
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.dialects import anthropic_messages, bedrock_converse, openai_chat
from modelmart.core.types import Message, Request, ResponseFormat, TextBlock, Tool, ToolChoice
from modelmart.providers.local.model import LoadedModel, LocalOptions, bundled_model_path
from modelmart.providers.local.plan import make_plan

from . import seeds
from .client import Problem
from .mutate import NUMBERS, JSON_VALUES, _mutate_once, mutated
from .runs import fuzz_settings

_PATTERN_PARTS = st.sampled_from(("a", "b", "(", ")", "[", "]", "a-z", "{", "}", "|", "*", "+",
                                  "?", ".", ",", "\\", "\\d", "^", "$", "0", "1", "9", "99999",
                                  "{1000}", "{0,1001}", "{2,}", "(?:", "(?=", '"', "\u00e9"))
PATTERNS = st.lists(_PATTERN_PARTS, max_size=30).map(lambda parts: "^" + "".join(parts) + "$")
COUNT_KEYS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties",
              "maxProperties")


@st.composite
def schemas(draw) -> dict:
    schema = copy.deepcopy(seeds.SCHEMA)
    name = draw(st.sampled_from(sorted(schema["properties"])))
    field = schema["properties"][name]
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            field[draw(st.sampled_from(COUNT_KEYS))] = draw(st.sampled_from(NUMBERS))
        elif choice == 1:
            field = {"type": "string", "pattern": draw(PATTERNS)}
        elif choice == 2:
            field = draw(_mutate_once(field))
            field = field if isinstance(field, dict) else {"const": 1}
        else:
            field = {"anyOf": [field, draw(JSON_VALUES.filter(lambda v: isinstance(v, dict)))]}
    schema["properties"][name] = field
    return schema


@pytest.fixture(scope="module")
def model():
    return LoadedModel(LocalOptions(model_path=str(bundled_model_path()), n_ctx=512))


OPTIONS = LocalOptions(model_path="", n_ctx=512)


def plan_status(model, request: Request, tally, surface: str, shown: bytes) -> None:
    """Counts the plan (200) or the refusal (400); anything else is a problem (500)."""
    status = 200
    try:
        make_plan(model, request, OPTIONS, "m")
    except InvalidRequest:
        status = 400
    except Exception as exc:  # what the API would answer with a 500
        status = 500
        tally.problems.append(Problem(surface, f"{type(exc).__name__}: {exc}"[:300],
                                      shown[:600], 500, b""))
    tally.count(surface, status)


def test_bundled_model_grammar(model, tally):
    surface = "local-grammar"

    @fuzz_settings(300)
    @given(schemas(), st.booleans())
    def one(schema: dict, as_tool: bool) -> None:
        kw = ({"tools": [Tool("f", None, schema)], "tool_choice": ToolChoice("any")} if as_tool
              else {"response_format": ResponseFormat("json_schema", schema=schema)})
        request = Request(model="m", messages=[Message("user", [TextBlock("hi")])],
                          max_tokens=2, **kw)
        plan_status(model, request, tally, surface, repr(schema).encode())

    t0 = time.monotonic()
    one()
    tally.seconds[surface] += time.monotonic() - t0
    problems = tally.of(surface)
    assert not problems, "\n".join(f"{p.what}\n  for {p.request!r}" for p in problems[:8])


DECODERS = {
    "openai": (openai_chat.decode_request, seeds.openai_chat),
    "anthropic": (anthropic_messages.decode_request, seeds.anthropic_messages),
    "bedrock": (lambda data: bedrock_converse.decode_request(data, "m"),
                seeds.bedrock_converse),
}


@pytest.mark.parametrize("dialect", sorted(DECODERS))
def test_bundled_model_plans_for_mutated_requests(model, tally, dialect):
    decode, make_seeds = DECODERS[dialect]
    surface = f"local-plan-{dialect}"

    @fuzz_settings(300)
    @given(mutated(make_seeds("m")))
    def one(body: bytes) -> None:
        try:
            request = decode(orjson.loads(body))
        except (orjson.JSONDecodeError, InvalidRequest):
            tally.count(surface, 400)  # the dialect refuses it before the model sees it
            return
        plan_status(model, request, tally, surface, body)

    t0 = time.monotonic()
    one()
    tally.seconds[surface] += time.monotonic() - t0
    problems = tally.of(surface)
    assert not problems, "\n".join(f"{p.what}\n  for {p.request!r}" for p in problems[:8])
