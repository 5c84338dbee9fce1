"""The Anthropic Messages dialect: decode/encode both directions, streams, errors, and the
official SDK's own models and stream accumulation as the judge of what we emit."""

from __future__ import annotations

import copy

import anthropic
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage

from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, InvalidRequest, Overloaded, RateLimited,
    RequestTooLarge, UpstreamError, UpstreamTimeout,
)
from modelmart.core.types import (
    BlockStart, BlockStop, ImageBlock, Message, MessageEnd, MessageStart, Request,
    ResponseFormat, Response, TextBlock, TextDelta, ThinkingBlock, ThinkingDelta, Tool,
    ToolArgsDelta, ToolChoice, ToolResultBlock, ToolUseBlock, Usage,
)
from modelmart.dialects import anthropic_messages as am
from modelmart.dialects.sse import SSEParser

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def wire_request(**overrides) -> dict:
    body = {"model": "claude-x", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}]}
    body.update(overrides)
    return body


# ---- decode_request ---------------------------------------------------------------------


def test_decode_every_top_level_field():
    req = am.decode_request(wire_request(
        system="be brief", temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["END"],
        stream=True, metadata={"user_id": "u-1"},
        tools=[{"name": "weather", "description": "look it up", "input_schema": WEATHER}],
        tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 2000}, service_tier="auto",
    ))
    assert req.model == "claude-x" and req.max_tokens == 100
    assert req.messages == [Message("user", [TextBlock("hi")])]
    assert req.system == "be brief"
    assert (req.temperature, req.top_p, req.top_k) == (0.5, 0.9, 40)
    assert req.stop == ["END"] and req.stream is True and req.user == "u-1"
    assert req.tools == [Tool("weather", "look it up", WEATHER)]
    assert req.tool_choice == ToolChoice("tool", "weather", disable_parallel=True)
    assert req.extra == {"thinking": {"type": "enabled", "budget_tokens": 2000},
                         "service_tier": "auto"}
    assert req.seed is None and req.response_format is None


def test_decode_system_blocks_join_and_ignore_cache_control():
    req = am.decode_request(wire_request(system=[
        {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "two"}]))
    assert req.system == "one\n\ntwo"


def test_decode_every_content_block():
    req = am.decode_request(wire_request(messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": [
                {"type": "text", "text": "boom"},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/b.png"}}]},
            {"type": "tool_result", "tool_use_id": "toolu_3"}]},
    ]))
    assert req.messages == [
        Message("user", [TextBlock("look"), ImageBlock(media_type="image/png", data="iVBORw0KGgo="),
                         ImageBlock(url="https://x.test/a.jpg")]),
        Message("assistant", [ThinkingBlock("hmm", "sig1"),
                              ToolUseBlock("toolu_1", "weather", {"city": "Oslo"})]),
        Message("user", [
            ToolResultBlock("toolu_1", [TextBlock("4C")]),
            ToolResultBlock("toolu_2", [TextBlock("boom"), ImageBlock(url="https://x.test/b.png")],
                            is_error=True),
            ToolResultBlock("toolu_3", [])]),
    ]
    assert req.needs_images()


def test_decode_merges_consecutive_turns_of_one_role():
    req = am.decode_request(wire_request(messages=[
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"}, {"role": "assistant", "content": ""}]))
    assert req.messages == [Message("user", [TextBlock("a"), TextBlock("b")]),
                            Message("assistant", [TextBlock("c")])]


def test_decode_first_message_may_be_assistant():
    req = am.decode_request(wire_request(messages=[{"role": "assistant", "content": "x"},
                                                   {"role": "user", "content": "y"}]))
    assert [m.role for m in req.messages] == ["assistant", "user"]


def test_decode_structured_output_settings():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = am.decode_request(wire_request(
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": schema}}))
    assert req.response_format == ResponseFormat("json_schema", schema)
    assert req.extra == {"output_config": {"effort": "low"}}
    legacy = am.decode_request(
        wire_request(output_format={"type": "json_schema", "schema": schema}))
    assert legacy.response_format == ResponseFormat("json_schema", schema)
    assert legacy.extra == {}


BAD_REQUESTS = [
    (["not", "an", "object"], None, "JSON object"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model", "required"),
    (wire_request(model=7), "model", "string"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens", "required"),
    (wire_request(max_tokens=0), "max_tokens", "at least 1"),
    (wire_request(max_tokens=True), "max_tokens", "integer"),
    (wire_request(max_tokens="10"), "max_tokens", "integer"),
    ({"model": "m", "max_tokens": 5}, "messages", "required"),
    (wire_request(messages=[]), "messages", "at least one"),
    (wire_request(messages="hi"), "messages", "array"),
    (wire_request(messages=[{"role": "system", "content": "x"}]), "messages.0.role", "system"),
    (wire_request(messages=[{"role": "tool", "content": "x"}]), "messages.0.role", "unknown role"),
    (wire_request(messages=[{"role": "user"}]), "messages.0.content", "required"),
    (wire_request(messages=[{"role": "user", "content": ""}]), "messages.0", "non-empty"),
    (wire_request(messages=[{"role": "user", "content": 5}]), "messages.0.content", "array"),
    (wire_request(messages=[{"role": "user", "content": [{"type": "audio"}]}]),
     "messages.0.content.0.type", "unsupported content block type 'audio'"),
    (wire_request(messages=[{"role": "user", "content": [{"text": "x"}]}]),
     "messages.0.content.0.type", "required"),
    (wire_request(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
     "messages.0.content.0.text", "string"),
    (wire_request(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}]}]),
     "messages.0.content.0.source.media_type", "image/bmp"),
    (wire_request(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
     "messages.0.content.0.source.type", "base64 or url"),
    (wire_request(messages=[{"role": "user", "content": [
        {"type": "tool_use", "id": "t", "name": "n", "input": {}}]}]),
     "messages.0.content.0.type", "assistant"),
    (wire_request(messages=[{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "n", "input": "{}"}]}]),
     "messages.0.content.0.input", "object"),
    (wire_request(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_use"}]}]}]),
     "messages.0.content.0.content.0.type", "text or image"),
    (wire_request(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]}]),
     "messages.0.content.0.is_error", "boolean"),
    (wire_request(system=[{"type": "image"}]), "system.0.type", "text"),
    (wire_request(system=5), "system", "array"),
    (wire_request(temperature=1.5), "temperature", "between 0 and 1"),
    (wire_request(temperature="hot"), "temperature", "number"),
    (wire_request(top_p=-0.1), "top_p", "between 0 and 1"),
    (wire_request(top_k=-1), "top_k", "at least 0"),
    (wire_request(top_k=1.5), "top_k", "integer"),
    (wire_request(stop_sequences="END"), "stop_sequences", "array"),
    (wire_request(stop_sequences=[1]), "stop_sequences.0", "string"),
    (wire_request(stream="yes"), "stream", "boolean"),
    (wire_request(metadata={"user_id": 5}), "metadata.user_id", "string"),
    (wire_request(tools={"name": "x"}), "tools", "array"),
    (wire_request(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
     "tools.0.type", "not supported"),
    (wire_request(tools=[{"input_schema": WEATHER}]), "tools.0.name", "required"),
    (wire_request(tools=[{"name": "bad name!", "input_schema": WEATHER}]), "tools.0.name",
     "letters"),
    (wire_request(tools=[{"name": "x"}]), "tools.0.input_schema", "required"),
    (wire_request(tools=[{"name": "x", "input_schema": {"type": "string"}}]),
     "tools.0.input_schema.type", "object"),
    (wire_request(tools=[{"name": "x", "input_schema": WEATHER}] * 2),
     "tools.1.name", "unique"),
    (wire_request(tools=[{"name": "x", "input_schema": WEATHER}], tool_choice={"type": "some"}),
     "tool_choice.type", "one of"),
    (wire_request(tools=[{"name": "x", "input_schema": WEATHER}], tool_choice={"type": "tool"}),
     "tool_choice.name", "required"),
    (wire_request(tools=[{"name": "x", "input_schema": WEATHER}],
                  tool_choice={"type": "tool", "name": "y"}), "tool_choice.name", "not one of"),
    (wire_request(tool_choice={"type": "any"}), "tool_choice", "needs at least one tool"),
    (wire_request(tool_choice="auto"), "tool_choice", "object"),
    (wire_request(tools=[{"name": "x", "input_schema": WEATHER}],
                  tool_choice={"type": "auto", "disable_parallel_tool_use": 1}),
     "tool_choice.disable_parallel_tool_use", "boolean"),
    (wire_request(output_config={"format": {"type": "json_object"}}), "output_config.format.type",
     "json_schema"),
]


@pytest.mark.parametrize("body,param,fragment", BAD_REQUESTS)
def test_decode_rejects_bad_requests_naming_the_field(body, param, fragment):
    with pytest.raises(InvalidRequest) as info:
        am.decode_request(body)
    assert info.value.status == 400
    assert info.value.param == param
    assert fragment in info.value.message


# ---- encode_request ---------------------------------------------------------------------


def rich_request() -> Request:
    return Request(
        model="alias", system="sys", max_tokens=256, temperature=0.3, top_p=0.8, top_k=5,
        stop=["STOP"], user="u-9", stream=True,
        tools=[Tool("weather", "look it up", WEATHER), Tool("clock")],
        tool_choice=ToolChoice("any", disable_parallel=True),
        extra={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        messages=[
            Message("user", [TextBlock("hello"), ImageBlock(media_type="image/png", data="AAAA"),
                             ImageBlock(url="https://x.test/i.png")]),
            Message("assistant", [ThinkingBlock("think", "sig"),
                                  ToolUseBlock("toolu_1", "weather", {"city": "Oslo"})]),
            Message("user", [ToolResultBlock("toolu_1", [TextBlock("4C")], is_error=True),
                             TextBlock("thanks")]),
        ],
    )


def test_encode_request_every_field():
    body = am.encode_request(rich_request(), "claude-upstream", stream=True)
    assert body == {
        "model": "claude-upstream", "max_tokens": 256, "system": "sys",
        "temperature": 0.3, "top_p": 0.8, "top_k": 5, "stop_sequences": ["STOP"],
        "metadata": {"user_id": "u-9"}, "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "weather", "description": "look it up", "input_schema": WEATHER},
                  {"name": "clock", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "think", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather",
                 "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                 "content": [{"type": "text", "text": "4C"}]},
                {"type": "text", "text": "thanks"}]},
        ],
    }


def test_encode_request_defaults_and_what_anthropic_lacks():
    req = Request(model="a", messages=[Message("user", [TextBlock("x")])], seed=42,
                  temperature=1.7)
    body = am.encode_request(req, "m", stream=False)
    assert body["max_tokens"] == 4096
    assert body["temperature"] == 1.0  # OpenAI's 0..2 range capped to Anthropic's 0..1
    assert "seed" not in body and "stream" not in body and "tool_choice" not in body


def test_encode_request_merges_turns_and_drops_what_anthropic_rejects():
    req = Request(model="a", messages=[
        Message("user", [TextBlock("a")]),
        Message("user", [TextBlock("b")]),
        Message("assistant", [TextBlock(""), ThinkingBlock("from another provider")]),
        Message("user", [TextBlock("c")]),
    ])
    body = am.encode_request(req, "m", stream=False)
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
        {"type": "text", "text": "c"}]}]


def test_encode_request_with_nothing_to_send_is_refused():
    req = Request(model="a", messages=[Message("user", [TextBlock("")])])
    with pytest.raises(InvalidRequest, match="no message content"):
        am.encode_request(req, "m", stream=False)


def test_encode_request_inline_image_needs_media_type():
    req = Request(model="a", messages=[Message("user", [ImageBlock(data="AAAA")])])
    with pytest.raises(InvalidRequest, match="media_type"):
        am.encode_request(req, "m", stream=False)


@pytest.mark.parametrize("choice,wire", [
    (ToolChoice("auto"), {"type": "auto"}),
    (ToolChoice("none"), {"type": "none"}),
    (ToolChoice("tool", "weather"), {"type": "tool", "name": "weather"}),
    (ToolChoice("tool", "weather", disable_parallel=True),
     {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}),
])
def test_encode_tool_choice(choice, wire):
    req = Request(model="a", messages=[Message("user", [TextBlock("x")])],
                  tools=[Tool("weather", None, WEATHER)], tool_choice=choice)
    assert am.encode_request(req, "m", stream=False)["tool_choice"] == wire


def test_encode_tool_choice_without_tools_is_left_out():
    req = Request(model="a", messages=[Message("user", [TextBlock("x")])],
                  tool_choice=ToolChoice("auto"))
    assert "tool_choice" not in am.encode_request(req, "m", stream=False)


def test_encode_response_format_as_structured_output():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    req = Request(model="a", messages=[Message("user", [TextBlock("x")])],
                  response_format=ResponseFormat("json_schema", schema, name="n"),
                  extra={"output_config": {"effort": "high"}})
    body = am.encode_request(req, "m", stream=False)
    assert body["output_config"] == {"effort": "high",
                                     "format": {"type": "json_schema", "schema": schema}}
    req.response_format = ResponseFormat("json_object")
    body = am.encode_request(req, "m", stream=False)
    assert body["output_config"]["format"] == {"type": "json_schema", "schema": {"type": "object"}}
    req.response_format = ResponseFormat("text")
    assert "format" not in am.encode_request(req, "m", stream=False)["output_config"]


def test_encode_response_format_refused_where_unsupported():
    req = Request(model="a", messages=[Message("user", [TextBlock("x")])],
                  response_format=ResponseFormat("json_object"))
    with pytest.raises(InvalidRequest, match="not supported by this deployment") as info:
        am.encode_request(req, "m", stream=False, drop=["output_format"])
    assert info.value.param == "response_format"


def test_encode_request_drops_unsupported_params_but_never_required_ones():
    body = am.encode_request(rich_request(), "m", stream=False,
                             drop=["top_k", "thinking", "max_tokens"])
    assert "top_k" not in body and "thinking" not in body
    assert body["max_tokens"] == 256 and body["top_p"] == 0.8


def test_request_round_trip_canonical_wire_canonical():
    req = rich_request()
    back = am.decode_request(am.encode_request(req, "alias", stream=True))
    assert back == req


def test_request_round_trip_wire_canonical_wire():
    wire = am.encode_request(rich_request(), "claude-x", stream=True)
    again = am.encode_request(am.decode_request(copy.deepcopy(wire)), "claude-x", stream=True)
    assert again == wire


# ---- responses --------------------------------------------------------------------------


def wire_message(**overrides) -> dict:
    msg = {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "plan", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Checking.", "citations": None},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 30, "cache_creation_input_tokens": 5,
                  "cache_read_input_tokens": 100, "output_tokens_details": {"thinking_tokens": 12}},
    }
    msg.update(overrides)
    return msg


def test_decode_response():
    resp = am.decode_response(wire_message())
    assert resp == Response(
        id="msg_01", model="claude-x",
        content=[ThinkingBlock("plan", "sig"), TextBlock("Checking."),
                 ToolUseBlock("toolu_1", "weather", {"city": "Oslo"})],
        stop_reason="tool_use",
        usage=Usage(input_tokens=20, output_tokens=30, cache_write_tokens=5,
                    cache_read_tokens=100, reasoning_tokens=12))
    # Anthropic's input_tokens already excludes cached tokens, as canonical does.
    assert resp.usage.total_input_tokens == 125


@pytest.mark.parametrize("wire,canonical", [
    ("end_turn", "end_turn"), ("max_tokens", "max_tokens"), ("stop_sequence", "stop_sequence"),
    ("tool_use", "tool_use"), ("pause_turn", "end_turn"), ("refusal", "content_filter"),
    ("model_context_window_exceeded", "max_tokens"), (None, "end_turn"),
])
def test_decode_stop_reasons(wire, canonical):
    assert am.decode_response(wire_message(stop_reason=wire)).stop_reason == canonical


def test_decode_response_keeps_stop_sequence_and_tolerates_missing_cache_counts():
    resp = am.decode_response(wire_message(stop_reason="stop_sequence", stop_sequence="END",
                                           usage={"input_tokens": 3, "output_tokens": 4}))
    assert resp.stop_sequence == "END"
    assert resp.usage == Usage(input_tokens=3, output_tokens=4)


@pytest.mark.parametrize("broken", [
    [], {"type": "error"}, wire_message(content="text"), wire_message(id=None),
    wire_message(content=[{"type": "text"}]), wire_message(content=["x"]),
    wire_message(content=[{"type": "tool_use", "id": "t", "name": "n", "input": "{}"}]),
    wire_message(usage={"input_tokens": "many", "output_tokens": 1}), wire_message(usage=5),
])
def test_decode_malformed_response_is_an_upstream_error(broken):
    with pytest.raises(UpstreamError, match="malformed") as info:
        am.decode_response(broken)
    assert info.value.status == 502


def canonical_response(**overrides) -> Response:
    fields = dict(
        id="msg_gw1", model="upstream-model",
        content=[ThinkingBlock("why", "sig"), TextBlock("Hi"),
                 ToolUseBlock("toolu_9", "weather", {"city": "Rome"})],
        stop_reason="tool_use",
        usage=Usage(input_tokens=10, output_tokens=20, cache_read_tokens=30, cache_write_tokens=40,
                    reasoning_tokens=5))
    fields.update(overrides)
    return Response(**fields)


def test_encode_response_validates_with_the_sdk():
    body = am.encode_response(canonical_response(), "claude-alias")
    msg = SDKMessage.model_validate(body)
    assert msg.id == "msg_gw1" and msg.model == "claude-alias" and msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[2].input == {"city": "Rome"}
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (10, 20)
    assert msg.usage.cache_read_input_tokens == 30
    assert msg.usage.cache_creation_input_tokens == 40
    assert msg.usage.output_tokens_details.thinking_tokens == 5
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason",
                         "stop_sequence", "usage"}


def test_encode_response_edge_cases_still_validate():
    resp = canonical_response(content=[ThinkingBlock("unsigned"), TextBlock("")],
                              stop_reason="content_filter", usage=Usage())
    body = am.encode_response(resp, "m")
    msg = SDKMessage.model_validate(body)
    assert msg.stop_reason == "refusal"
    assert msg.content[0].signature == ""
    assert "output_tokens_details" not in body["usage"]


def test_response_round_trip():
    resp = canonical_response(stop_reason="stop_sequence", stop_sequence="END")
    back = am.decode_response(am.encode_response(resp, "upstream-model"))
    assert back == resp


# ---- streams ----------------------------------------------------------------------------


def canonical_stream(usage_at_end: Usage | None = None) -> list:
    return [
        MessageStart("msg_s1", "upstream", Usage(input_tokens=0)),
        BlockStart(0, ThinkingBlock("")),
        ThinkingDelta(0, "let me "), ThinkingDelta(0, "see"), ThinkingDelta(0, signature="sig"),
        BlockStop(0),
        BlockStart(1, TextBlock("")),
        TextDelta(1, "Hel"), TextDelta(1, "lo"),
        BlockStop(1),
        BlockStart(2, ToolUseBlock("toolu_a", "weather", {})),
        ToolArgsDelta(2, '{"ci'), ToolArgsDelta(2, 'ty": "Oslo"}'),
        BlockStop(2),
        BlockStart(3, ToolUseBlock("toolu_b", "clock", {})),
        ToolArgsDelta(3, "{}"),
        BlockStop(3),
        MessageEnd("tool_use", usage_at_end or Usage(input_tokens=50, output_tokens=25,
                                                     cache_read_tokens=7, cache_write_tokens=3)),
    ]


def encode_all(events, model="claude-alias") -> bytes:
    enc = am.StreamEncoder(model)
    return b"".join(enc.event(ev) for ev in events) + enc.end()


def parse_sse(raw: bytes) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    return parser.feed(raw) + parser.close()


def decode_all(frames) -> list:
    dec = am.StreamDecoder()
    out = []
    for name, data in frames:
        out += dec.feed(name, data)
    return out + dec.close()


def test_stream_encoder_emits_the_documented_event_sequence():
    frames = parse_sse(encode_all(canonical_stream()))
    names = [name for name, _ in frames]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    for name, data in frames:
        assert orjson.loads(data)["type"] == name
    start = orjson.loads(frames[0][1])["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["model"] == "claude-alias" and start["id"] == "msg_s1"
    delta = orjson.loads(frames[-2][1])
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 50, "output_tokens": 25,
                              "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7}
    kinds = [orjson.loads(d)["delta"]["type"] for n, d in frames if n == "content_block_delta"]
    assert kinds == ["thinking_delta", "thinking_delta", "signature_delta", "text_delta",
                     "text_delta", "input_json_delta", "input_json_delta", "input_json_delta"]


def test_stream_encoder_output_decodes_back_to_the_same_events():
    events = canonical_stream()
    assert decode_all(parse_sse(encode_all(events, model="upstream"))) == events


def test_sdk_accumulates_encoder_output_into_the_final_message():
    snapshot = None
    json_bufs: dict = {}
    for name, data in parse_sse(encode_all(canonical_stream())):
        if name == "ping":
            continue  # the SDK's stream drops pings before accumulating
        snapshot = accumulate_event(event=orjson.loads(data), current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    msg = SDKMessage.model_validate(snapshot.to_dict())
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "let me see" and msg.content[0].signature == "sig"
    assert msg.content[1].text == "Hello"
    assert msg.content[2].input == {"city": "Oslo"} and msg.content[3].input == {}
    # message_start said 0 input tokens; the final figures come from message_delta.
    assert msg.usage.input_tokens == 50 and msg.usage.output_tokens == 25
    assert msg.usage.cache_read_input_tokens == 7
    assert msg.usage.cache_creation_input_tokens == 3


def test_stream_encoder_renumbers_blocks_and_closes_open_ones():
    frames = parse_sse(encode_all([
        MessageStart("m", "x"), BlockStart(4, TextBlock("")), TextDelta(4, "a"),
        TextDelta(9, "lost"), MessageEnd("end_turn", Usage(output_tokens=1)),
        TextDelta(4, "after the end")]))
    data = [orjson.loads(d) for _, d in frames]
    assert [d["type"] for d in data] == ["message_start", "ping", "content_block_start",
                                         "content_block_delta", "content_block_stop",
                                         "message_delta", "message_stop"]
    assert {d.get("index") for d in data if "index" in d} == {0}


def test_stream_encoder_starts_a_message_if_the_start_event_is_missing():
    frames = parse_sse(encode_all([BlockStart(0, TextBlock("")), TextDelta(0, "x")]))
    assert [n for n, _ in frames][:2] == ["message_start", "ping"]
    assert orjson.loads(frames[0][1])["message"]["id"].startswith("msg_")


def test_stream_encoder_error_event_and_end():
    enc = am.StreamEncoder("m")
    enc.event(MessageStart("m1", "m"))
    raw = enc.error(Overloaded("busy", status=529))
    assert raw == (b'event: error\ndata: {"type":"error","error":'
                   b'{"type":"overloaded_error","message":"busy"}}\n\n')
    assert enc.event(TextDelta(0, "late")) == b"" and enc.end() == b""


async def test_sdk_raises_on_an_error_event_mid_stream():
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    enc = am.StreamEncoder("claude-alias")
    body = b"".join(enc.event(ev) for ev in canonical_stream()[:9])
    body += enc.error(Overloaded("upstream overloaded", status=529))

    async def handler(request):
        return web.Response(body=body, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    async with TestServer(app) as server:
        client = anthropic.AsyncAnthropic(api_key="k", base_url=str(server.make_url("")),
                                          max_retries=0)
        seen = []
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model="claude-alias", max_tokens=10,
                                              messages=[{"role": "user", "content": "x"}]) as s:
                async for text in s.text_stream:
                    seen.append(text)
        await client.close()
    assert seen == ["Hel", "lo"]
    assert info.value.body["error"] == {"type": "overloaded_error",
                                        "message": "upstream overloaded"}


def frame(name: str, **data) -> tuple[str, bytes]:
    return name, orjson.dumps({"type": name, **data})


def upstream_frames() -> list[tuple[str, bytes]]:
    return [
        frame("message_start", message={
            "id": "msg_u", "type": "message", "role": "assistant", "model": "claude-up",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 1, "cache_creation_input_tokens": 6,
                      "cache_read_input_tokens": 9}}),
        frame("ping"),
        frame("content_block_start", index=0,
              content_block={"type": "server_tool_use", "id": "s", "name": "web_search",
                             "input": {}}),
        frame("content_block_delta", index=0,
              delta={"type": "input_json_delta", "partial_json": "{}"}),
        frame("content_block_stop", index=0),
        frame("content_block_start", index=1, content_block={"type": "text", "text": ""}),
        frame("content_block_delta", index=1, delta={"type": "text_delta", "text": "Hi"}),
        frame("content_block_delta", index=1, delta={"type": "citations_delta", "citation": {}}),
        frame("content_block_stop", index=1),
        frame("content_block_start", index=2, content_block={
            "type": "tool_use", "id": "toolu_z", "name": "weather", "input": {}}),
        frame("content_block_delta", index=2,
              delta={"type": "input_json_delta", "partial_json": ""}),
        frame("content_block_delta", index=2, delta={"type": "input_json_delta",
                                                     "partial_json": '{"city":"Oslo"}'}),
        frame("content_block_stop", index=2),
        frame("some_future_event", stuff=1),
        frame("message_delta", delta={"stop_reason": "max_tokens", "stop_sequence": None},
              usage={"output_tokens": 33}),
        frame("message_stop"),
    ]


def test_stream_decoder_maps_upstream_events():
    assert decode_all(upstream_frames()) == [
        MessageStart("msg_u", "claude-up", Usage(input_tokens=40, output_tokens=1,
                                                 cache_write_tokens=6, cache_read_tokens=9)),
        BlockStart(0, TextBlock("")), TextDelta(0, "Hi"), BlockStop(0),
        BlockStart(1, ToolUseBlock("toolu_z", "weather", {})),
        ToolArgsDelta(1, '{"city":"Oslo"}'), BlockStop(1),
        # usage combined: input and cache counts from message_start, output from message_delta
        MessageEnd("max_tokens", Usage(input_tokens=40, output_tokens=33, cache_write_tokens=6,
                                       cache_read_tokens=9)),
    ]


def test_stream_decoder_takes_restated_counts_from_message_delta():
    frames = upstream_frames()
    frames[-2] = frame("message_delta", delta={"stop_reason": "end_turn"},
                       usage={"output_tokens": 5, "input_tokens": 41, "cache_read_input_tokens": 0})
    end = decode_all(frames)[-1]
    assert end.usage == Usage(input_tokens=41, output_tokens=5, cache_write_tokens=6)


def test_stream_decoder_uses_the_data_type_when_event_names_are_missing():
    events = decode_all([(None, data) for _, data in upstream_frames()])
    assert events == decode_all(upstream_frames())


@pytest.mark.parametrize("kind,cls,status", [
    ("overloaded_error", Overloaded, 529), ("rate_limit_error", RateLimited, 429),
    ("api_error", UpstreamError, 500), ("request_too_large", RequestTooLarge, 413),
    ("authentication_error", AuthenticationFailed, 401), ("timeout_error", UpstreamTimeout, 504),
    ("invalid_request_error", InvalidRequest, 400), ("mystery_error", UpstreamError, 500),
])
def test_stream_decoder_raises_error_events(kind, cls, status):
    dec = am.StreamDecoder()
    dec.feed(*upstream_frames()[0])
    with pytest.raises(cls) as info:
        dec.feed("error", orjson.dumps({"type": "error", "error": {"type": kind, "message": "m"}}))
    assert info.value.status == status and info.value.message == "m"


def test_stream_decoder_close_before_the_end_raises():
    dec = am.StreamDecoder()
    for f in upstream_frames()[:8]:
        dec.feed(*f)
    with pytest.raises(UpstreamError, match="ended before it finished"):
        dec.close()


def test_stream_decoder_close_after_message_delta_finishes_the_message():
    events = decode_all(upstream_frames()[:-1])
    assert isinstance(events[-1], MessageEnd) and events[-1].usage.output_tokens == 33


def test_stream_decoder_closes_blocks_left_open():
    frames = upstream_frames()
    del frames[12]  # the tool block's content_block_stop
    events = decode_all(frames)
    assert events[-2:] == [BlockStop(1), events[-1]] and isinstance(events[-1], MessageEnd)


@pytest.mark.parametrize("frames,fragment", [
    ([("message_start", b"{not json")], "not JSON"),
    ([("message_start", b"[1]")], "not an object"),
    ([frame("content_block_start", index=0, content_block={"type": "text"})],
     "before message_start"),
    ([upstream_frames()[0], frame("content_block_start", index=0)], "bad content_block_start"),
])
def test_stream_decoder_malformed_events(frames, fragment):
    dec = am.StreamDecoder()
    with pytest.raises(UpstreamError, match=fragment):
        for f in frames:
            dec.feed(*f)


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("status,kind", [
    (400, "invalid_request_error"), (409, "invalid_request_error"), (422, "invalid_request_error"),
    (401, "authentication_error"), (402, "billing_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (500, "api_error"), (502, "api_error"), (504, "timeout_error"),
    (503, "overloaded_error"), (529, "overloaded_error"),
    (418, "invalid_request_error"), (599, "api_error"),
])
def test_encode_error(status, kind):
    assert am.encode_error(GatewayError("nope", status=status)) == (
        status, {"type": "error", "error": {"type": kind, "message": "nope"}})


def test_encode_error_body_is_what_the_sdk_reads():
    from anthropic.types.shared import ErrorResponse

    status, body = am.encode_error(RateLimited("slow down"))
    assert status == 429
    assert ErrorResponse.model_validate(body).error.type == "rate_limit_error"


@pytest.mark.parametrize("status,cls", [
    (400, InvalidRequest), (401, AuthenticationFailed), (413, RequestTooLarge),
    (429, RateLimited), (500, UpstreamError), (529, Overloaded),
])
def test_decode_error_keeps_the_upstream_status(status, cls):
    body = orjson.dumps({"type": "error", "error": {"type": "x", "message": "upstream says no"}})
    err = am.decode_error(status, body)
    assert type(err) is cls and err.status == status and err.message == "upstream says no"


def test_decode_error_tolerates_bodies_that_are_not_json():
    err = am.decode_error(502, b"<html>Bad Gateway</html>")
    assert isinstance(err, UpstreamError) and err.status == 502
    assert "Bad Gateway" in err.message
    assert am.decode_error(503, b"").message == "upstream returned HTTP 503"
    assert len(am.decode_error(500, b"x" * 5000).message) < 300
    assert am.decode_error(400, b'{"error": "flat"}').status == 400
