"""Hostile request bodies every client dialect must refuse with a 400 naming the field, never
an exception of another kind (which the API turns into a 500): values of the wrong JSON
type where the decoder looks a name up, and values nested deeper than any encoder or
recursive function downstream can take. Each case was a 500 once (found by tests/fuzz/)."""

from __future__ import annotations

import orjson
import pytest

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request, Tool
from modelmart.dialects import (
    anthropic_messages, bedrock_converse, gemini, openai_chat, openai_embeddings,
    openai_responses,
)
from modelmart.dialects._checks import MAX_NESTING, nesting_exceeds, shown
from modelmart.routing.capability import estimate_input_tokens

DEEP = 300  # past orjson's 255 levels, below its 1,024 for parsing


def nested(depth: int, leaf=1):
    """``{"a": {"a": ... leaf}}``, ``depth`` objects deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_json(depth: int) -> str:
    """The JSON text of ``nested(depth)`` (orjson would refuse to write it)."""
    return '{"a":' * depth + "1" + "}" * depth


def nested_list(depth: int):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def refused(decode, data, *args, fragment: str = "", **kw) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        decode(data, *args, **kw)
    assert info.value.status == 400
    assert fragment in info.value.message, info.value.message
    return info.value


# ---- the helpers ------------------------------------------------------------------------


def test_nesting_is_measured_without_recursion():
    assert not nesting_exceeds(nested(MAX_NESTING - 1))  # the leaf is no container
    assert not nesting_exceeds(nested_list(MAX_NESTING))
    assert nesting_exceeds(nested_list(MAX_NESTING + 1))
    assert nesting_exceeds(nested_list(100_000))  # far past the recursion limit
    assert not nesting_exceeds("x") and not nesting_exceeds([1, "a", None, 2.5])
    assert nesting_exceeds([[1], {"a": [{"b": [[]]}]}], limit=5)
    assert not nesting_exceeds([[1], {"a": [{"b": [[]]}]}], limit=6)


def test_shown_quotes_scalars_and_names_containers():
    assert shown("wizard") == "'wizard'" and shown(3) == "3" and shown(None) == "null"
    assert shown(True) == "true" and shown(nested(5000)) == "an object"
    assert shown([1]) == "an array" and len(shown("x" * 100_000)) < 110


# ---- OpenAI Chat Completions ------------------------------------------------------------


def chat(**kw) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


def test_chat_role_nested_past_the_recursion_limit_is_a_400():
    # The error message once quoted the role with repr(): RecursionError, a 500.
    body = chat(messages=[{"role": nested(1000), "content": "x"}])
    err = refused(openai_chat.decode_request, body, fragment="an object")
    assert err.param == "messages[0].role"


@pytest.mark.parametrize("body, param", [
    (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": nested(DEEP)}}]),
     "tools[0].function.parameters"),
    (chat(response_format={"type": "json_schema", "json_schema": {
        "name": "n", "schema": nested(DEEP)}}), "response_format.json_schema.schema"),
    (chat(messages=[{"role": "user", "content": "q"},
                    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                     "function": {"name": "f", "arguments": deep_json(DEEP)}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "r"}]),
     "messages[1].tool_calls[0].function.arguments"),
    (chat(logit_bias=nested(DEEP)), "logit_bias"),
    (chat(anything=nested_list(DEEP)), "anything"),
])
def test_chat_values_passed_on_unread_are_bounded(body, param):
    err = refused(openai_chat.decode_request, body, fragment=f"nested deeper than {MAX_NESTING}")
    assert err.param == param


def test_chat_nesting_at_the_bound_is_accepted_and_encodes():
    schema = nested(MAX_NESTING - 1, leaf={})  # MAX_NESTING objects
    req = openai_chat.decode_request(chat(tools=[{"type": "function", "function": {
        "name": "f", "parameters": schema}}]))
    orjson.dumps(openai_chat.encode_request(req, "m", stream=False))
    orjson.dumps(anthropic_messages.encode_request(req, "m", stream=False))
    orjson.dumps(bedrock_converse.encode_request(req, "m"))
    orjson.dumps(gemini.encode_request(req, "m", stream=False))


# ---- OpenAI Responses -------------------------------------------------------------------


def responses(**kw) -> dict:
    return {"model": "m", "input": "hi", **kw}


@pytest.mark.parametrize("kind", [{"a": 1}, ["message"], 7, None])
def test_responses_item_type_of_another_json_type_is_a_400(kind):
    # A dict or list was looked up in the handlers' table: TypeError (unhashable), a 500.
    err = refused(openai_responses.decode_request,
                  responses(input=[{"type": kind, "role": "user", "content": "x"}]),
                  fragment="not supported")
    assert err.param == "input[0].type"


@pytest.mark.parametrize("item, param", [
    ({"type": "reasoning", "content": 5}, "input[0].content"),
    ({"type": "reasoning", "summary": 5}, "input[0].summary"),
    ({"type": "reasoning", "summary": [{"text": ["a"]}]}, "input[0].summary[0].text"),
    ({"type": "reasoning", "summary": ["a"]}, "input[0].summary[0]"),
    ({"type": "reasoning", "summary": [], "encrypted_content": {"a": 1}},
     "input[0].encrypted_content"),
])
def test_responses_reasoning_items_are_checked(item, param):
    body = responses(input=[item, {"role": "user", "content": "x"}])
    assert refused(openai_responses.decode_request, body).param == param


@pytest.mark.parametrize("body, param", [
    (responses(tools=[{"type": "function", "name": "f", "parameters": nested(DEEP)}]),
     "tools[0].parameters"),
    (responses(text={"format": {"type": "json_schema", "name": "n", "schema": nested(DEEP)}}),
     "text.format.schema"),
    (responses(metadata=nested(DEEP)), "metadata"),
    (responses(input=[{"type": "function_call", "call_id": "c", "name": "f",
                       "arguments": deep_json(DEEP)}]),
     "input[0].arguments"),
])
def test_responses_values_passed_on_unread_are_bounded(body, param):
    err = refused(openai_responses.decode_request, body, fragment="nested deeper")
    assert err.param == param


def test_responses_tool_type_nested_deep_is_a_400():
    body = responses(tools=[{"type": nested(1000), "name": "f"}])
    err = refused(openai_responses.decode_request, body, fragment="an object")
    assert err.param == "tools[0].type"


# ---- Anthropic Messages -----------------------------------------------------------------


def messages(**kw) -> dict:
    return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **kw}


@pytest.mark.parametrize("body, param", [
    (messages(tools=[{"name": "f", "input_schema": {"type": "object", "p": nested(DEEP)}}]),
     "tools.0.input_schema"),
    (messages(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": nested(DEEP)}]}]),
     "messages.1.content.0.input"),
    (messages(output_format={"type": "json_schema", "schema": nested(DEEP)}),
     "output_format.schema"),
    (messages(thinking=nested(DEEP)), "thinking"),
])
def test_anthropic_values_passed_on_unread_are_bounded(body, param):
    err = refused(anthropic_messages.decode_request, body, fragment="nested deeper than")
    assert err.param == param and err.message.startswith(param)


@pytest.mark.parametrize("body", [
    messages(messages=[{"role": nested(1000), "content": "x"}]),
    messages(system=[{"type": nested(1000), "text": "x"}]),
    messages(tools=[{"type": nested(1000), "name": "f"}]),
    messages(tool_choice={"type": nested(1000)}),
    messages(output_format={"type": nested(1000)}),
    messages(messages=[{"role": "user", "content": [{"type": "image", "source": {
        "type": nested(1000)}}]}]),
])
def test_anthropic_deep_values_quoted_in_errors_are_400s(body):
    refused(anthropic_messages.decode_request, body, fragment="an object")


# ---- Bedrock Converse -------------------------------------------------------------------


def converse(**kw) -> dict:
    return {"messages": [{"role": "user", "content": [{"text": "hi"}]}], **kw}


TOOLS = [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]


@pytest.mark.parametrize("choice", [{"a": {}}, {"Auto": {}}, {"none": {}}])
def test_bedrock_unknown_tool_choice_is_a_validation_error(choice):
    # Taken as a choice named "a": the upstream encoders then failed on it (a 500).
    body = converse(toolConfig={"tools": TOOLS, "toolChoice": choice})
    err = refused(bedrock_converse.decode_request, body, "m", stream=True,
                  fragment="expected one of auto, any, tool")
    assert bedrock_converse.encode_error(err)[1]["__type"] == "ValidationException"


@pytest.mark.parametrize("body, fragment", [
    (converse(system=[{"sticker": "x"}]), "system.0: unknown member 'sticker'"),
    (converse(messages=[{"role": "user", "content": [{"image": {"format": "png", "source": {
        "url": "x"}}}]}]), "unknown member 'url'; expected one of bytes, s3Location"),
    (converse(messages=[{"role": "user", "content": [{"toolResult": {
        "toolUseId": "t", "content": [{"html": "x"}]}}]}]), "unknown member 'html'"),
    (converse(toolConfig={"tools": [{"webSearch": {}}]}), "unknown member 'webSearch'"),
])
def test_bedrock_unions_accept_only_their_members(body, fragment):
    refused(bedrock_converse.decode_request, body, "m", fragment=fragment)


@pytest.mark.parametrize("body, param", [
    (converse(toolConfig={"tools": [{"toolSpec": {"name": "f", "inputSchema": {
        "json": nested(DEEP)}}}]}), "toolConfig.tools.0.toolSpec.inputSchema.json"),
    (converse(messages=[{"role": "user", "content": [{"text": "q"}]},
                        {"role": "assistant", "content": [{"toolUse": {
                            "toolUseId": "t", "name": "f", "input": nested(DEEP)}}]}]),
     "messages.1.content.0.toolUse.input"),
    # The decoder itself serialized this one: orjson's recursion limit, a 500.
    (converse(messages=[{"role": "user", "content": [{"toolResult": {
        "toolUseId": "t", "content": [{"json": nested(DEEP)}]}}]}]),
     "messages.0.content.0.toolResult.content.0.json"),
    (converse(outputConfig={"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
        "schema": deep_json(DEEP)}}}}),
     "outputConfig.textFormat.structure.jsonSchema.schema"),
    (converse(additionalModelRequestFields=nested(DEEP)), "additionalModelRequestFields"),
    (converse(requestMetadata=nested(DEEP)), "requestMetadata"),
])
def test_bedrock_values_passed_on_unread_are_bounded(body, param):
    err = refused(bedrock_converse.decode_request, body, "m", fragment="nested deeper")
    assert err.param == param


@pytest.mark.parametrize("body", [
    converse(messages=[{"role": nested(1000), "content": [{"text": "x"}]}]),
    converse(messages=[{"role": "user", "content": [{"image": {"format": nested(1000)}}]}]),
    converse(messages=[{"role": "user", "content": [{"toolResult": {
        "toolUseId": "t", "status": nested(1000), "content": []}}]}]),
])
def test_bedrock_deep_values_quoted_in_errors_are_400s(body):
    refused(bedrock_converse.decode_request, body, "m", fragment="an object")


# ---- Embeddings, Gemini, and the size estimate ------------------------------------------


def test_embeddings_extra_fields_are_bounded():
    body = {"model": "m", "input": "x", "extra": nested(DEEP)}
    err = refused(openai_embeddings.decode_request, body, fragment="nested deeper")
    assert err.param == "extra"


def test_gemini_bodies_are_bounded():
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "x": nested(DEEP)}
    refused(gemini.decode_request, body, "m", fragment="nested deeper")


def test_size_estimate_of_an_unencodable_request_is_a_400():
    """Requests made in code (not decoded) can still hold a deep schema: a 400, not a
    JSONEncodeError."""
    req = Request(model="m", messages=[], tools=[Tool("f", None, nested(DEEP))])
    with pytest.raises(InvalidRequest):
        estimate_input_tokens(req)
