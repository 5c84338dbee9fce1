"""JSON schemas for the bundled model's grammar (structured output and forced tool calls):
mutated schemas, nasty repetition counts and random patterns straight into ``make_plan``,
which builds the grammar before any token is generated. Each must give a plan or a 400;
another exception is a 500, and a crash here (llama.cpp once segfaulted on a pattern)
takes the test run down with it."""

from __future__ import annotations

import copy
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Message, Request, ResponseFormat, TextBlock, Tool, ToolChoice
from modelmart.providers.local.model import LoadedModel, LocalOptions, bundled_model_path
from modelmart.providers.local.plan import make_plan

from . import seeds
from .client import Problem
from .mutate import NUMBERS, JSON_VALUES, _mutate_once
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


def test_bundled_model_grammar(model, tally):
    options = LocalOptions(model_path="", n_ctx=512)
    surface = "local-grammar"

    @fuzz_settings(300)
    @given(schemas(), st.booleans())
    def one(schema: dict, as_tool: bool) -> None:
        kw = ({"tools": [Tool("f", None, schema)], "tool_choice": ToolChoice("any")} if as_tool
              else {"response_format": ResponseFormat("json_schema", schema=schema)})
        request = Request(model="m", messages=[Message("user", [TextBlock("hi")])],
                          max_tokens=2, **kw)
        status = 200
        try:
            make_plan(model, request, options, "m")
        except InvalidRequest:
            status = 400
        except Exception as exc:  # what the API would answer with a 500
            status = 500
            tally.problems.append(Problem(surface, f"{type(exc).__name__}: {exc}"[:300],
                                          repr(schema)[:600].encode(), 500, b""))
        tally.count(surface, status)

    t0 = time.monotonic()
    one()
    tally.seconds[surface] += time.monotonic() - t0
    problems = tally.of(surface)
    assert not problems, "\n".join(f"{p.what}\n  for {p.request!r}" for p in problems[:8])
