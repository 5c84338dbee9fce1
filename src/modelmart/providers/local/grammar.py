"""The GBNF grammar that holds the bundled model to a JSON schema (structured output, or a
forced tool call), built with llama-cpp-python's converter, within bounds.

The converter writes every repetition out: ``minLength: 20000000`` made a 100 MB grammar
(500 MB and 2.5 s to build), ``maxLength`` nests one group per character (llama.cpp's parser
refuses 1,024 of them), and an object's optional properties cost quadratically (200 of
them: 0.8 MB, 0.7 s to parse). So a schema is measured before it is converted, and the
grammar after; what is too large is a 400 that says which bound it passed. And the
converter loops forever on a ``]`` or ``}`` that closes nothing in a ``pattern`` (one
request, one thread spinning for good), so patterns are read first the way it reads them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request

from .model import LoadedModel

MAX_REPEAT = 1000  # one minLength, maxLength, minItems, ... or {n,m} in a pattern
MAX_REPEATS = 4000  # all of them in one schema together
MAX_PROPERTIES = 64  # in one object
MAX_NODES = 2000  # objects and arrays in the schema
MAX_GRAMMAR_BYTES = 256 * 1024

_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def grammar_for(model: LoadedModel, request: Request, mode: str, tools: list[str]) -> str | None:
    """The grammar for ``request`` (None: free text). ``mode`` is ``tools_mode``'s."""
    if mode == "forced":
        return _checked(model, schema_gbnf(_tool_call_schema(request, tools), "tools"))
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JSON_GBNF
    return _checked(model, schema_gbnf(fmt.schema or {"type": "object"}, "response_format"))


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


def schema_gbnf(schema: dict, param: str) -> str:
    check_size(schema, param)
    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as err:  # the converter raises bare errors on schemas it cannot do
        raise InvalidRequest(f"unsupported JSON schema: {err}", param=param) from err
    if len(gbnf) > MAX_GRAMMAR_BYTES:
        raise InvalidRequest(f"the JSON schema makes a grammar of {len(gbnf):,} bytes; the "
                             f"bundled model takes at most {MAX_GRAMMAR_BYTES:,}", param=param)
    return gbnf


def check_size(schema: Any, param: str) -> None:
    """Refuses a schema whose grammar would be too large to build, before building it."""
    nodes = repeats = 0
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            nodes += 1
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        nodes += 1
        for key in _COUNTS:
            repeats += _repeat(node.get(key), key, param)
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(pattern, param)
            for match in _QUANTIFIER.finditer(pattern):
                repeats += sum(_repeat(int(n), "a {n,m} in pattern", param)
                               for n in match.groups() if n)
        properties = node.get("properties")
        if isinstance(properties, dict) and len(properties) > MAX_PROPERTIES:
            raise InvalidRequest(f"an object of the JSON schema has {len(properties)} properties;"
                                 f" the bundled model's grammar takes at most {MAX_PROPERTIES}",
                                 param=param)
        stack.extend(node.values())
    if nodes > MAX_NODES:
        raise InvalidRequest(f"the JSON schema has {nodes} objects and arrays; the bundled "
                             f"model's grammar takes at most {MAX_NODES}", param=param)
    if repeats > MAX_REPEATS:
        raise InvalidRequest(f"the JSON schema asks for {repeats} repetitions in all (minLength, "
                             f"maxItems, {{n,m}} ...); the bundled model's grammar takes at most "
                             f"{MAX_REPEATS}", param=param)


def _check_pattern(pattern: str, param: str) -> None:
    """Refuses a ``]`` or ``}`` outside a character class or a quantifier: tokenized as the
    converter tokenizes (escapes take two characters, ``[...]`` and ``{...}`` are read
    whole), no other branch of its loop consumes one."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
        elif c == "[":
            i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
        elif c == "{":
            end = pattern.find("}", i)
            i = n if end < 0 else end + 1
        elif c in "]}":
            raise InvalidRequest(f"unsupported JSON schema: pattern {pattern[:100]!r} has a "
                                 f"{c!r} that closes nothing (at {i})", param=param)
        else:
            i += 1


def _repeat(value: Any, key: str, param: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    if value > MAX_REPEAT:
        raise InvalidRequest(f"{key} {value} is more than the bundled model's grammar takes "
                             f"({MAX_REPEAT})", param=param)
    return value


def _checked(model: LoadedModel, gbnf: str) -> str:
    """Parses the grammar once here: llama.cpp given a bad one mid-generation would crash."""
    vocab = model.llama._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if not sampler:
        raise InvalidRequest("could not build a grammar for this JSON schema")
    llama_cpp.llama_sampler_free(sampler)
    return gbnf
