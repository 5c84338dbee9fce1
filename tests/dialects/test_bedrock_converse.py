"""The Bedrock Converse dialect: requests as boto3 serializes them, responses, event
streams and errors as boto3 parses them.

A real boto3 ``bedrock-runtime`` client is the oracle: a ``before-send`` hook takes the
request it signed and answers with bytes our encoders made, so boto3's own serializer and
parsers (not our reading of the docs) decide what is right. No network is used.
"""

from __future__ import annotations

import json

import boto3
import orjson
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config
from botocore.exceptions import EventStreamError

from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, InternalError, InvalidRequest, NotFound, Overloaded,
    PaymentRequired, PermissionDenied, RateLimited, RequestTooLarge, UpstreamError,
    UpstreamTimeout,
)
from modelmart.core.types import (
    BlockStart, BlockStop, ImageBlock, Message, MessageEnd, MessageStart, Request,
    ResponseFormat, Response, TextBlock, TextDelta, ThinkingBlock, ThinkingDelta, Tool,
    ToolArgsDelta, ToolChoice, ToolResultBlock, ToolUseBlock, Usage,
)
from modelmart.dialects import bedrock_converse as bc
from modelmart.dialects.eventstream import EventStreamDecoder, encode_message
from tests.fakes.bedrock_server import event_frame, exception_frame

MODEL = "us.amazon.nova-lite-v1:0"
PNG = b"\x89PNG\r\n\x1a\nfake"
PNG_B64 = "iVBORw0KGgpmYWtl"


# ---- boto3 as the oracle ----------------------------------------------------------------


class _Raw:
    """What botocore reads a response body from; chunks of 7 bytes split frames apart."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        for i in range(0, len(self.data), 7):
            yield self.data[i:i + 7]

    def close(self) -> None:
        pass


def boto_client(answer=None):
    """A bedrock-runtime client whose requests never leave the process: ``answer(request)``
    returns (status, headers, body). Requests are kept in ``client.sent``."""
    client = boto3.client("bedrock-runtime", region_name="us-east-1",
                          endpoint_url="https://gateway.test",
                          aws_access_key_id="AKIDTEST", aws_secret_access_key="secret",
                          config=Config(retries={"total_max_attempts": 1}))
    client.sent = []

    def before_send(request, **_):
        client.sent.append(request)
        status, headers, body = answer(request) if answer else (200, {}, b"{}")
        return AWSResponse(request.url, status, HeadersDict(headers), _Raw(body))

    client.meta.events.register("before-send", before_send)
    return client


def serialized(**params) -> tuple[str, dict]:
    """The path and JSON body boto3 sends for ``converse(**params)``."""
    client = boto_client(lambda r: (200, {}, orjson.dumps(bc.encode_response(
        Response("x", "m", [TextBlock("ok")]), "m"))))
    client.converse(**params)
    request = client.sent[0]
    return request.url.split("gateway.test", 1)[1], json.loads(request.body)


def boto_converse(body: dict) -> dict:
    client = boto_client(lambda r: (200, {"content-type": "application/json"},
                                    orjson.dumps(body)))
    return client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}])


def boto_stream(data: bytes):
    client = boto_client(lambda r: (200, {"content-type": "application/vnd.amazon.eventstream"},
                                    data))
    resp = client.converse_stream(modelId=MODEL,
                                  messages=[{"role": "user", "content": [{"text": "x"}]}])
    return resp["stream"]


def boto_error(err: GatewayError):
    status, body = bc.encode_error(err)
    headers = {"content-type": "application/json", **bc.error_headers(err)}
    client = boto_client(lambda r: (status, headers, orjson.dumps(body)))
    with pytest.raises(client.exceptions.ClientError) as info:
        client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}])
    return client, info.value


# ---- requests ---------------------------------------------------------------------------

FULL = dict(
    modelId=MODEL,
    system=[{"text": "Be brief."}, {"cachePoint": {"type": "default"}}, {"text": "Be kind."}],
    messages=[
        {"role": "user", "content": [
            {"text": "What is in this picture?"},
            {"image": {"format": "png", "source": {"bytes": PNG}}}]},
        {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
            {"reasoningContent": {"redactedContent": b"secret"}},
            {"text": "Let me look."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup", "input": {"q": "cat"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "status": "error", "content": [
                {"text": "not found"}, {"json": {"code": 404}},
                {"image": {"format": "jpeg", "source": {"bytes": PNG}}}]}},
            {"cachePoint": {"type": "default"}},
            {"text": "Try again."}]},
    ],
    inferenceConfig={"maxTokens": 512, "temperature": 0.3, "topP": 0.9,
                     "stopSequences": ["STOP"]},
    toolConfig={"tools": [{"toolSpec": {
        "name": "lookup", "description": "Look a thing up",
        "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}}}},
        {"cachePoint": {"type": "default"}}],
        "toolChoice": {"tool": {"name": "lookup"}}},
    additionalModelRequestFields={"top_k": 40, "thinking": {"type": "enabled",
                                                             "budget_tokens": 1024}},
    guardrailConfig={"guardrailIdentifier": "g1", "guardrailVersion": "1"},
    requestMetadata={"team": "search"},
)


def test_boto3_puts_the_model_id_in_the_path_percent_encoded():
    path, body = serialized(**FULL)
    assert path == "/model/us.amazon.nova-lite-v1%3A0/converse"
    assert "modelId" not in body
    assert body["messages"][0]["content"][1]["image"]["source"]["bytes"] == PNG_B64


def test_decode_full_request_as_boto3_sends_it():
    _, body = serialized(**FULL)
    req = bc.decode_request(body, MODEL)
    assert req.model == MODEL and req.stream is False
    assert req.system == "Be brief.\n\nBe kind."
    assert req.messages == [
        Message("user", [TextBlock("What is in this picture?"),
                         ImageBlock(media_type="image/png", data=PNG_B64)]),
        Message("assistant", [ThinkingBlock("hmm", "sig"), TextBlock("Let me look."),
                              ToolUseBlock("tooluse_1", "lookup", {"q": "cat"})]),
        Message("user", [ToolResultBlock("tooluse_1", [
            TextBlock("not found"), TextBlock('{"code":404}'),
            ImageBlock(media_type="image/jpeg", data=PNG_B64)], is_error=True),
            TextBlock("Try again.")]),
    ]
    assert (req.max_tokens, req.temperature, req.top_p, req.stop) == (512, 0.3, 0.9, ["STOP"])
    assert req.tools == [Tool("lookup", "Look a thing up", {
        "type": "object", "properties": {"q": {"type": "string"}}})]
    assert req.tool_choice == ToolChoice("tool", "lookup")
    assert req.top_k == 40
    assert req.extra == {"thinking": {"type": "enabled", "budget_tokens": 1024},
                         "guardrailConfig": {"guardrailIdentifier": "g1",
                                             "guardrailVersion": "1"},
                         "requestMetadata": {"team": "search"}}


def test_stream_flag_comes_from_the_endpoint():
    req = bc.decode_request({"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
                            "m", stream=True)
    assert req.stream is True and req.model == "m"


def test_tool_choices_and_nova_top_k():
    base = {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {}}}}]}}
    for wire, kind in (({"auto": {}}, "auto"), ({"any": {}}, "any")):
        req = bc.decode_request({**base, "toolConfig": {**base["toolConfig"],
                                                        "toolChoice": wire}}, "m")
        assert req.tool_choice == ToolChoice(kind)
    req = bc.decode_request({**base, "additionalModelRequestFields": {
        "inferenceConfig": {"topK": 5, "other": 1}}}, "m")
    assert req.top_k == 5 and req.extra == {"inferenceConfig": {"other": 1}}


def test_structured_output_config():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    _, body = serialized(modelId="m", messages=[{"role": "user", "content": [{"text": "x"}]}],
                         outputConfig={"textFormat": {"type": "json_schema", "structure": {
                             "jsonSchema": {"schema": json.dumps(schema), "name": "thing"}}}})
    req = bc.decode_request(body, "m")
    assert req.response_format == ResponseFormat("json_schema", schema, "thing")
    sent = bc.encode_request(req, "m")["outputConfig"]["textFormat"]
    assert sent["type"] == "json_schema"
    definition = sent["structure"]["jsonSchema"]
    assert json.loads(definition.pop("schema")) == schema and definition == {"name": "thing"}


def _msgs(*content, role="user"):
    return {"messages": [{"role": role, "content": list(content)}]}


BAD_REQUESTS = [
    (["not", "an", "object"], "must be a JSON object"),
    ({}, "messages: field required"),
    ({"messages": []}, "messages: must contain at least one item"),
    ({"messages": [{"role": "system", "content": [{"text": "x"}]}]},
     "messages.0.role: must be user or assistant"),
    ({"messages": [{"role": "user", "content": []}]}, "messages.0.content: must contain"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "messages.0.content: expected an array"),
    (_msgs({"text": "a", "image": {}}), "messages.0.content.0: exactly one of"),
    (_msgs({}), "found none"),
    (_msgs({"sticker": {}}), "unknown content block member 'sticker'"),
    (_msgs({"document": {"name": "d"}}), "document.format: field required"),
    (_msgs({"video": {}}), "video content blocks are not supported"),
    (_msgs({"text": 5}), "messages.0.content.0.text: expected a string"),
    (_msgs({"toolUse": {"toolUseId": "a", "name": "b", "input": {}}}),
     "toolUse blocks may only appear in assistant messages"),
    (_msgs({"toolResult": {"toolUseId": "a", "content": []}}, role="assistant"),
     "toolResult blocks may only appear in user messages"),
    (_msgs({"image": {"format": "bmp", "source": {"bytes": "AA=="}}}),
     "messages.0.content.0.image.format: must be one of png, jpeg, gif, webp"),
    (_msgs({"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/k"}}}}),
     "s3Location image sources are not supported"),
    (_msgs({"image": {"format": "png", "source": {"bytes": ""}}}),
     "source.bytes: must not be empty"),
    (_msgs({"toolResult": {"toolUseId": "a", "content": [], "status": "maybe"}}),
     "toolResult.status: must be success or error"),
    (_msgs({"toolResult": {"toolUseId": "a", "content": [{"video": {}}]}}),
     "video tool results are not supported"),
    ({**_msgs({"text": "x"}), "inferenceConfig": {"temperature": 1.5}},
     "inferenceConfig.temperature: must be between 0 and 1"),
    ({**_msgs({"text": "x"}), "inferenceConfig": {"maxTokens": 0}},
     "inferenceConfig.maxTokens: must be at least 1"),
    ({**_msgs({"text": "x"}), "inferenceConfig": {"stopSequences": [""]}},
     "inferenceConfig.stopSequences.0: must not be empty"),
    ({**_msgs({"text": "x"}), "toolConfig": {"tools": []}}, "toolConfig.tools: must contain"),
    ({**_msgs({"text": "x"}), "toolConfig": {"tools": [{"toolSpec": {
        "name": "bad name", "inputSchema": {"json": {}}}}]}}, "toolSpec.name: must be 1-64"),
    ({**_msgs({"text": "x"}), "toolConfig": {"tools": [
        {"toolSpec": {"name": "a", "inputSchema": {"json": {}}}},
        {"toolSpec": {"name": "a", "inputSchema": {"json": {}}}}]}}, "'a' is repeated"),
    ({**_msgs({"text": "x"}), "toolConfig": {"tools": [
        {"toolSpec": {"name": "a", "inputSchema": {"json": {}}}}],
        "toolChoice": {"tool": {"name": "b"}}}}, "'b' is not one of the tools"),
    ({**_msgs({"text": "x"}), "toolConfig": {"tools": [{"systemTool": {"name": "x"}}]}},
     "systemTool tools are not supported"),
    ({**_msgs({"text": "x"}), "additionalModelRequestFields": {"top_k": -1}},
     "additionalModelRequestFields.top_k: must be at least 0"),
    ({**_msgs({"text": "x"}), "additionalModelRequestFields": {"guardrailConfig": {}}},
     "belongs at the top level"),
    ({**_msgs({"text": "x"}), "outputConfig": {"textFormat": {
        "type": "json_schema", "structure": {"jsonSchema": {"schema": "{nope"}}}}},
     "must be a JSON schema serialized as a string"),
    ({**_msgs({"text": "x"}), "temperature": 0.5}, "unknown field(s) temperature"),
    ({**_msgs({"text": "x"}), "system": [{"text": ""}]}, "system.0.text: must not be empty"),
]


@pytest.mark.parametrize("body,fragment", BAD_REQUESTS)
def test_invalid_requests_say_what_is_wrong(body, fragment):
    with pytest.raises(InvalidRequest) as info:
        bc.decode_request(body, "m")
    assert fragment in info.value.message
    assert info.value.status == 400


def test_empty_model_id_is_refused():
    with pytest.raises(InvalidRequest, match="modelId: must not be empty"):
        bc.decode_request(_msgs({"text": "x"}), "")


def test_consecutive_turns_of_one_role_merge():
    body = {"messages": [{"role": "user", "content": [{"text": "a"}]},
                         {"role": "user", "content": [{"text": "b"}]}]}
    assert bc.decode_request(body, "m").messages == [
        Message("user", [TextBlock("a"), TextBlock("b")])]


def test_encode_request_from_canonical():
    req = Request(
        model="alias", system="sys", max_tokens=100, temperature=1.7, top_p=0.5, top_k=3,
        stop=["END"], messages=[
            Message("user", [TextBlock("hi"), TextBlock(""),
                             ImageBlock(media_type="image/jpg", data="AAAA")]),
            Message("assistant", [ThinkingBlock("unsigned thought"),
                                  ToolUseBlock("c1", "f", {"x": 1})]),
            Message("user", [ToolResultBlock("c1", [TextBlock("done")])])],
        tools=[Tool("f", "does f", {"type": "object"})], tool_choice=ToolChoice("any"))
    assert bc.encode_request(req, "anthropic.claude-3-haiku") == {
        "messages": [
            {"role": "user", "content": [
                {"text": "hi"}, {"image": {"format": "jpeg", "source": {"bytes": "AAAA"}}}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "c1", "name": "f", "input": {"x": 1}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "c1", "content": [{"text": "done"}]}}]}],
        "system": [{"text": "sys"}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 1.0, "topP": 0.5,
                            "stopSequences": ["END"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "f", "description": "does f",
                                               "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"any": {}}},
        "additionalModelRequestFields": {"top_k": 3},
    }


def test_nova_takes_top_k_in_its_own_inference_config():
    req = Request(model="m", messages=[Message("user", [TextBlock("x")])], top_k=7)
    assert bc.encode_request(req, "us.amazon.nova-lite-v1:0")[
        "additionalModelRequestFields"] == {"inferenceConfig": {"topK": 7}}


def test_tool_choice_none():
    tools = [Tool("f")]
    fresh = Request(model="m", messages=[Message("user", [TextBlock("x")])], tools=tools,
                    tool_choice=ToolChoice("none"))
    assert "toolConfig" not in bc.encode_request(fresh, "m")
    # Bedrock refuses toolUse/toolResult blocks without a toolConfig, so it stays.
    used = Request(model="m", tools=tools, tool_choice=ToolChoice("none"), messages=[
        Message("user", [TextBlock("x")]), Message("assistant", [ToolUseBlock("1", "f", {})]),
        Message("user", [ToolResultBlock("1", [TextBlock("r")])])])
    assert bc.encode_request(used, "m")["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]}


def test_drop_removes_named_fields_at_any_level():
    req = Request(model="m", messages=[Message("user", [TextBlock("x")])], temperature=0.5,
                  top_k=2, extra={"serviceTier": {"type": "flex"}, "thinking": {}})
    body = bc.encode_request(req, "m", drop=["temperature", "top_k", "serviceTier"])
    assert body == {"messages": [{"role": "user", "content": [{"text": "x"}]}],
                    "additionalModelRequestFields": {"thinking": {}}}


def test_response_format_refused_when_the_deployment_drops_output_config():
    req = Request(model="m", messages=[Message("user", [TextBlock("x")])],
                  response_format=ResponseFormat("json_object"))
    assert bc.encode_request(req, "m")["outputConfig"]["textFormat"]["structure"][
        "jsonSchema"] == {"schema": '{"type":"object"}'}
    with pytest.raises(InvalidRequest, match="not supported by this deployment"):
        bc.encode_request(req, "m", drop=["outputConfig"])


@pytest.mark.parametrize("block,fragment", [
    (ImageBlock(url="https://example.com/cat.png"), "inline bytes only"),
    (ImageBlock(media_type="image/tiff", data="AA=="), "unsupported image media type"),
])
def test_images_bedrock_cannot_take(block, fragment):
    req = Request(model="m", messages=[Message("user", [block])])
    with pytest.raises(InvalidRequest, match=fragment):
        bc.encode_request(req, "m")


def test_nothing_to_send():
    req = Request(model="m", messages=[Message("user", [TextBlock("")])])
    with pytest.raises(InvalidRequest, match="no message content"):
        bc.encode_request(req, "m")


def test_request_round_trip_through_the_wire():
    _, body = serialized(**FULL)
    req = bc.decode_request(body, MODEL)
    again = bc.decode_request(bc.encode_request(req, MODEL), MODEL)
    assert again == req


def test_encoded_request_is_what_boto3_would_send():
    _, body = serialized(**FULL)
    encoded = bc.encode_request(bc.decode_request(body, MODEL), "anthropic.claude")
    # What we lose is only what canonical has no place for: cache points, redacted
    # reasoning, JSON tool results (as text), the split system prompt.
    _, expected = serialized(
        modelId="m", system=[{"text": "Be brief.\n\nBe kind."}],
        messages=[FULL["messages"][0],
                  {"role": "assistant", "content": [FULL["messages"][1]["content"][0],
                                                    *FULL["messages"][1]["content"][2:]]},
                  {"role": "user", "content": [
                      {"toolResult": {"toolUseId": "tooluse_1", "status": "error", "content": [
                          {"text": "not found"}, {"text": '{"code":404}'},
                          {"image": {"format": "jpeg", "source": {"bytes": PNG}}}]}},
                      {"text": "Try again."}]}],
        inferenceConfig=FULL["inferenceConfig"],
        toolConfig={"tools": FULL["toolConfig"]["tools"][:1],
                    "toolChoice": FULL["toolConfig"]["toolChoice"]},
        additionalModelRequestFields=FULL["additionalModelRequestFields"],
        guardrailConfig=FULL["guardrailConfig"], requestMetadata=FULL["requestMetadata"])
    assert encoded == expected


# ---- responses --------------------------------------------------------------------------

WIRE_RESPONSE = {
    "output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "s1"}}},
        {"reasoningContent": {"redactedContent": "c2VjcmV0"}},
        {"text": "Sunny."},
        {"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {"city": "Oslo"}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 1242,
              "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 200},
    "metrics": {"latencyMs": 250},
}


def test_decode_response():
    resp = bc.decode_response(WIRE_RESPONSE, "nova")
    assert resp.model == "nova" and resp.id.startswith("msg_")
    assert resp.content == [ThinkingBlock("think", "s1"), TextBlock("Sunny."),
                            ToolUseBlock("tu_1", "weather", {"city": "Oslo"})]
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=12, output_tokens=30, cache_read_tokens=1000,
                               cache_write_tokens=200)


@pytest.mark.parametrize("wire,canonical", [
    ("end_turn", "end_turn"), ("tool_use", "tool_use"), ("max_tokens", "max_tokens"),
    ("stop_sequence", "stop_sequence"), ("guardrail_intervened", "content_filter"),
    ("content_filtered", "content_filter"), ("model_context_window_exceeded", "max_tokens"),
    ("malformed_tool_use", "error"), ("something_new", "end_turn"),
])
def test_stop_reasons(wire, canonical):
    assert bc.decode_response({**WIRE_RESPONSE, "stopReason": wire}).stop_reason == canonical


def test_stop_sequence_from_additional_fields():
    resp = bc.decode_response({**WIRE_RESPONSE, "stopReason": "stop_sequence",
                               "additionalModelResponseFields": {"stop_sequence": "END"}})
    assert resp.stop_sequence == "END"


@pytest.mark.parametrize("data,fragment", [
    ([], "not an object"),
    ({"output": {}}, "output.message.content is not an array"),
    ({"output": {"message": {"content": [{"toolUse": {"name": "x"}}]}}}, "bad toolUse block"),
    ({"output": {"message": {"content": [{"text": 5}]}}}, "bad text block"),
    ({"output": {"message": {"content": ["x"]}}}, "not an object"),
    ({**WIRE_RESPONSE, "usage": {"inputTokens": "many"}}, "not integers"),
])
def test_malformed_responses(data, fragment):
    with pytest.raises(UpstreamError, match=fragment) as info:
        bc.decode_response(data)
    assert info.value.status == 502


def test_encode_response_parsed_by_boto3():
    resp = Response("msg_1", "x", [ThinkingBlock("hmm", "sig"), TextBlock("Hello"),
                                   ToolUseBlock("t1", "f", {"a": [1, 2]})],
                    stop_reason="tool_use",
                    usage=Usage(input_tokens=5, output_tokens=9, cache_read_tokens=100,
                                cache_write_tokens=20))
    parsed = boto_converse(bc.encode_response(resp, "m", latency_ms=42))
    assert parsed["output"]["message"] == {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"text": "Hello"}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": [1, 2]}}}]}
    assert parsed["stopReason"] == "tool_use"
    assert parsed["usage"] == {"inputTokens": 5, "outputTokens": 9, "totalTokens": 134,
                               "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}
    assert parsed["metrics"] == {"latencyMs": 42}
    assert bc.decode_response(bc.encode_response(resp, "m"), "x").content == resp.content


@pytest.mark.parametrize("canonical,wire", [
    ("content_filter", "content_filtered"), ("error", "malformed_model_output"),
    ("stop_sequence", "stop_sequence"), ("max_tokens", "max_tokens"),
])
def test_encode_stop_reasons(canonical, wire):
    resp = Response("i", "m", [TextBlock("x")], stop_reason=canonical, stop_sequence="Z")
    body = bc.encode_response(resp, "m")
    assert boto_converse(body)["stopReason"] == wire
    assert body["additionalModelResponseFields"] == {"stop_sequence": "Z"}


# ---- streams ----------------------------------------------------------------------------

CANONICAL_STREAM = [
    MessageStart("msg_1", "m"),
    BlockStart(0, ThinkingBlock("")), ThinkingDelta(0, "let me"), ThinkingDelta(0, " see"),
    ThinkingDelta(0, signature="sig"), BlockStop(0),
    BlockStart(1, TextBlock("")), TextDelta(1, "Hel"), TextDelta(1, "lo"), BlockStop(1),
    BlockStart(2, ToolUseBlock("t1", "weather", {})), ToolArgsDelta(2, '{"city"'),
    ToolArgsDelta(2, ': "Oslo"}'), BlockStop(2),
    BlockStart(3, ToolUseBlock("t2", "clock", {})), ToolArgsDelta(3, "{}"),
    MessageEnd("tool_use", Usage(input_tokens=3, output_tokens=8, cache_read_tokens=50)),
]


def encode_stream(events) -> bytes:
    encoder = bc.StreamEncoder("m")
    return b"".join(encoder.event(ev) for ev in events) + encoder.end()


def test_stream_encoder_parsed_by_boto3():
    events = list(boto_stream(encode_stream(CANONICAL_STREAM)))
    metadata = events.pop()["metadata"]
    assert metadata["usage"] == {"inputTokens": 3, "outputTokens": 8, "totalTokens": 61,
                                 "cacheReadInputTokens": 50, "cacheWriteInputTokens": 0}
    assert isinstance(metadata["metrics"]["latencyMs"], int)
    assert events == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0,
                               "delta": {"reasoningContent": {"text": "let me"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 0,
                               "delta": {"reasoningContent": {"text": " see"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 0,
                               "delta": {"reasoningContent": {"signature": "sig"}}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Hel"}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "lo"}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"contentBlockStart": {"contentBlockIndex": 2, "start": {
            "toolUse": {"toolUseId": "t1", "name": "weather"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 2,
                               "delta": {"toolUse": {"input": '{"city"'}}}},
        {"contentBlockDelta": {"contentBlockIndex": 2,
                               "delta": {"toolUse": {"input": ': "Oslo"}'}}}},
        {"contentBlockStop": {"contentBlockIndex": 2}},
        {"contentBlockStart": {"contentBlockIndex": 3, "start": {
            "toolUse": {"toolUseId": "t2", "name": "clock"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}},
        {"contentBlockStop": {"contentBlockIndex": 3}},  # closed by MessageEnd
        {"messageStop": {"stopReason": "tool_use"}},
    ]


def test_stream_without_message_start_still_starts():
    encoder = bc.StreamEncoder("m")
    data = encoder.event(BlockStart(0, TextBlock(""))) + encoder.event(TextDelta(0, "x"))
    data += encoder.event(MessageEnd("end_turn", Usage()))
    assert encoder.event(TextDelta(0, "late")) == b""  # nothing after the end
    names = [next(iter(e)) for e in boto_stream(data)]
    assert names == ["messageStart", "contentBlockDelta", "contentBlockStop", "messageStop",
                     "metadata"]


@pytest.mark.parametrize("err,code", [
    (RateLimited("slow down"), "throttlingException"),
    (InvalidRequest("bad"), "validationException"),
    (Overloaded("busy"), "serviceUnavailableException"),
    (Overloaded("busy", status=529), "serviceUnavailableException"),
    (InternalError("oops"), "internalServerException"),
    (UpstreamError("upstream broke"), "modelStreamErrorException"),
    (UpstreamTimeout("slow model"), "modelStreamErrorException"),
])
def test_stream_error_raises_event_stream_error_in_boto3(err, code):
    encoder = bc.StreamEncoder("m")
    data = encoder.event(MessageStart("i", "m")) + encoder.event(BlockStart(0, TextBlock("")))
    data += encoder.event(TextDelta(0, "partial")) + encoder.error(err)
    assert encoder.event(TextDelta(0, "more")) == b""
    stream = boto_stream(data)
    got = []
    with pytest.raises(EventStreamError) as info:
        for event in stream:
            got.append(event)
    assert len(got) == 2
    assert info.value.response["Error"] == {"Code": code, "Message": err.message}
    # ... and our own decoder turns it back into the error it was, status and all.
    decoder = bc.StreamDecoder()
    with pytest.raises(GatewayError) as ours:
        for msg in EventStreamDecoder().feed(data):
            decoder.feed_message(msg)
    assert ours.value.message == err.message
    assert ours.value.status == bc.errors.STREAM_EXCEPTIONS[code]


def _decode(data: bytes, decoder=None) -> list:
    decoder = decoder or bc.StreamDecoder("nova", "msg_x")
    out = []
    for msg in EventStreamDecoder().feed(data):
        out += decoder.feed_message(msg)
    return out + decoder.close()


def test_stream_round_trip():
    events = _decode(encode_stream(CANONICAL_STREAM))
    assert events[0] == MessageStart("msg_x", "nova")
    expected = CANONICAL_STREAM[1:-1] + [BlockStop(3), CANONICAL_STREAM[-1]]
    # A Converse thinking delta carries text or signature, never both.
    assert events[1:] == expected


def test_stream_decoder_reads_what_bedrock_sends():
    data = b"".join([
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {
            "reasoningContent": {"redactedContent": "c2VjcmV0"}}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("contentBlockStart", {"contentBlockIndex": 2, "start": {
            "toolUse": {"toolUseId": "t", "name": "f"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {
            "toolUse": {"input": ""}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {
            "toolUse": {"input": "{}"}}}),
        event_frame("somethingNew", {"x": 1}),
        event_frame("contentBlockStop", {"contentBlockIndex": 2}),
        event_frame("messageStop", {"stopReason": "stop_sequence",
                                    "additionalModelResponseFields": {"stop_sequence": "##"}}),
        event_frame("metadata", {"usage": {"inputTokens": 4, "outputTokens": 2,
                                           "totalTokens": 6}, "metrics": {"latencyMs": 9}}),
    ])
    assert _decode(data) == [
        MessageStart("msg_x", "nova"), BlockStart(0, TextBlock("")), TextDelta(0, "Hi"),
        BlockStop(0), BlockStart(1, ToolUseBlock("t", "f", {})), ToolArgsDelta(1, "{}"),
        BlockStop(1),
        MessageEnd("stop_sequence", Usage(input_tokens=4, output_tokens=2), "##")]


def test_stream_missing_only_metadata_finishes_on_close():
    data = event_frame("messageStart", {"role": "assistant"}) + event_frame(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}) + event_frame(
        "messageStop", {"stopReason": "end_turn"})
    assert _decode(data)[-2:] == [BlockStop(0), MessageEnd("end_turn", Usage())]


def test_truncated_stream_is_an_upstream_error():
    data = event_frame("messageStart", {"role": "assistant"}) + event_frame(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
    with pytest.raises(UpstreamError, match="ended before it finished"):
        _decode(data)


@pytest.mark.parametrize("name,payload,fragment", [
    ("contentBlockDelta", b"{nope", "not JSON"),
    ("contentBlockDelta", b"[1]", "not an object"),
    ("contentBlockDelta", b'{"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{"}}}',
     "bad contentBlockDelta event"),
    ("contentBlockStart", b'{"contentBlockIndex": 0, "start": {"toolUse": {"name": "f"}}}',
     "bad contentBlockStart event"),
    ("messageStop", b"{}", "bad messageStop event"),
])
def test_malformed_stream_events(name, payload, fragment):
    with pytest.raises(UpstreamError, match=fragment):
        bc.StreamDecoder().feed(name, payload)


@pytest.mark.parametrize("name,cls,status", [
    ("throttlingException", RateLimited, 429),
    ("validationException", InvalidRequest, 400),
    ("internalServerException", UpstreamError, 500),
    ("modelStreamErrorException", UpstreamError, 424),
    ("serviceUnavailableException", Overloaded, 503),
    ("brandNewException", UpstreamError, 500),
])
def test_stream_exceptions_from_upstream(name, cls, status):
    msg = EventStreamDecoder().feed(exception_frame(name, "it broke"))[0]
    with pytest.raises(cls) as info:
        bc.StreamDecoder().feed_message(msg)
    assert info.value.status == status and info.value.message == "it broke"


def test_transport_error_message():
    data = encode_message({":message-type": "error", ":error-code": "InternalFailure",
                           ":error-message": "try later"}, b"")
    with pytest.raises(UpstreamError, match="try later"):
        _decode(data)


def test_events_after_the_end_are_ignored():
    decoder = bc.StreamDecoder()
    decoder.feed("messageStop", b'{"stopReason": "end_turn"}')
    assert decoder.feed("metadata", b'{"usage": {"inputTokens": 1}}')[-1] == MessageEnd(
        "end_turn", Usage(input_tokens=1))
    late = b'{"contentBlockIndex": 0, "delta": {"text": "x"}}'
    assert decoder.feed("contentBlockDelta", late) == []
    assert decoder.close() == []


# ---- errors -----------------------------------------------------------------------------

ERROR_CASES = [
    (InvalidRequest("bad field"), 400, "ValidationException"),
    (AuthenticationFailed("who?"), 401, "UnrecognizedClientException"),
    (PaymentRequired("budget spent"), 402, "AccessDeniedException"),
    (PermissionDenied("no"), 403, "AccessDeniedException"),
    (NotFound("no such model"), 404, "ResourceNotFoundException"),
    (RequestTooLarge("too big"), 413, "ValidationException"),
    (RateLimited("slow down"), 429, "ThrottlingException"),
    (InternalError("bug"), 500, "InternalServerException"),
    (UpstreamError("bad gateway"), 502, "InternalServerException"),
    (Overloaded("busy"), 503, "ServiceUnavailableException"),
    (Overloaded("busy", status=529), 529, "ServiceUnavailableException"),
    (UpstreamTimeout("slow"), 504, "ModelTimeoutException"),
    (UpstreamTimeout("slow", status=408), 408, "ModelTimeoutException"),
    (UpstreamError("model failed", status=424), 424, "ModelErrorException"),
    (GatewayError("teapot", status=418), 418, "ValidationException"),
]


@pytest.mark.parametrize("err,status,code", ERROR_CASES)
def test_errors_raise_the_modelled_boto3_exception(err, status, code):
    assert bc.encode_error(err) == (status, {"message": err.message, "__type": code})
    assert bc.error_headers(err) == {"x-amzn-errortype": code}
    client, raised = boto_error(err)
    assert raised.response["Error"] == {"Code": code, "Message": err.message}
    assert raised.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if code != "UnrecognizedClientException":  # a generic AWS code, not in the model
        assert isinstance(raised, getattr(client.exceptions, code))


def test_an_error_that_names_its_aws_type_keeps_it():
    err = PermissionDenied("signature mismatch",
                           headers={"x-amzn-errortype": "InvalidSignatureException"})
    _, raised = boto_error(err)
    assert raised.response["Error"]["Code"] == "InvalidSignatureException"


@pytest.mark.parametrize("status,body,headers,cls,fragment", [
    (400, b'{"message": "bad temp"}',
     {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/"},
     InvalidRequest, "bad temp"),
    (429, b'{"message": "loading"}', {"x-amzn-errortype": "ModelNotReadyException"},
     Overloaded, "loading"),
    (400, b'{"message": "quota"}', {"x-amzn-errortype": "ServiceQuotaExceededException"},
     RateLimited, "quota"),
    (403, b'{"message": "bad sig"}', {"x-amzn-errortype": "InvalidSignatureException"},
     AuthenticationFailed, "bad sig"),
    (400, b'{"__type": "ThrottlingException", "Message": "slow"}', None, RateLimited, "slow"),
    (424, b'{"message": "model crashed"}', None, UpstreamError, "model crashed"),
    (408, b'{"message": "timeout"}', None, UpstreamTimeout, "timeout"),
    (403, b'{"message": "denied"}', None, PermissionDenied, "denied"),
    (503, b"<html>Service Unavailable</html>", None, Overloaded,
     "upstream returned HTTP 503: <html>Service Unavailable</html>"),
    (418, b"", None, InvalidRequest, "upstream returned HTTP 418"),
])
def test_decode_error_keeps_the_status(status, body, headers, cls, fragment):
    err = bc.decode_error(status, body, headers)
    assert type(err) is cls and err.status == status and fragment in err.message
