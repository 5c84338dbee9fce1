"""The OpenAI Chat Completions dialect: requests, responses, streams and errors, both ways."""

from __future__ import annotations

import copy

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from modelmart.core import errors as E
from modelmart.core.types import (
    BlockStart,
    BlockStop,
    ImageBlock,
    Message,
    MessageEnd,
    MessageStart,
    Request,
    ResponseFormat,
    Response,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    Tool,
    ToolArgsDelta,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from modelmart.dialects.openai_chat import (
    StreamDecoder,
    StreamEncoder,
    decode_error,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
)
from modelmart.dialects.sse import SSEParser

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAE="
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def body(**kw):
    base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    base.update(kw)
    return base


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


# ---- decode_request: messages -----------------------------------------------------------


def test_minimal_request():
    req = decode_request(body())
    assert req.model == "gpt-4o"
    assert req.messages == [Message("user", [TextBlock("hi")])]
    assert req.system is None and req.stream is False and req.extra == {}


def test_system_and_developer_fold_into_system_wherever_they_are():
    req = decode_request(body(messages=[
        {"role": "system", "content": "one"},
        {"role": "user", "content": "q"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "a"},
    ]))
    assert req.system == "one\n\ntwo"
    assert [m.role for m in req.messages] == ["user", "assistant"]


def test_user_parts_text_and_images():
    req = decode_request(body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]))
    assert req.messages[0].content == [
        TextBlock("look"),
        ImageBlock(media_type="image/png", data=PNG_B64, detail="low"),
        ImageBlock(url="https://example.com/cat.jpg"),
    ]


def test_assistant_tool_calls_and_tool_results_merge_into_one_user_turn():
    req = decode_request(body(messages=[
        {"role": "user", "content": "weather in Paris and Oslo?"},
        {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            call("c1", "get_weather", '{"city": "Paris"}'), call("c2", "get_weather", '{"city":"Oslo"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "thanks"},
        {"role": "user", "content": "and tomorrow?"},
    ]))
    assert req.messages[1] == Message("assistant", [
        ToolUseBlock("c1", "get_weather", {"city": "Paris"}),
        ToolUseBlock("c2", "get_weather", {"city": "Oslo"})])
    assert req.messages[2] == Message("user", [
        ToolResultBlock("c1", [TextBlock("sunny")]),
        ToolResultBlock("c2", [TextBlock("rain")]),
        TextBlock("thanks")])
    assert req.messages[3] == Message("user", [TextBlock("and tomorrow?")])


def test_assistant_content_parts_text_with_refusal_ignored():
    req = decode_request(body(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"},
                                          {"type": "text", "text": "b"}]},
        {"role": "user", "content": "y"},
    ]))
    assert req.messages[1] == Message("assistant", [TextBlock("ab")])


def test_assistant_text_with_tool_calls_keeps_both():
    req = decode_request(body(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "checking", "tool_calls": [call("c1", "f", "")]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]))
    assert req.messages[1].content == [TextBlock("checking"), ToolUseBlock("c1", "f", {})]


# ---- decode_request: fields --------------------------------------------------------------


def test_sampling_fields():
    req = decode_request(body(temperature=0.7, top_p=0.9, max_tokens=100, stop="END", seed=42,
                              user="u-1", n=1))
    assert (req.temperature, req.top_p, req.max_tokens, req.stop, req.seed, req.user) == (
        0.7, 0.9, 100, ["END"], 42, "u-1")
    assert decode_request(body(stop=["a", "b"])).stop == ["a", "b"]


def test_max_completion_tokens_wins_over_max_tokens():
    assert decode_request(body(max_tokens=100, max_completion_tokens=50)).max_tokens == 50
    assert decode_request(body(max_completion_tokens=7)).max_tokens == 7


def test_tools_and_default_parameters():
    req = decode_request(body(tools=[WEATHER, {"type": "function", "function": {"name": "ping"}}]))
    assert req.tools == [
        Tool("get_weather", "Weather for a city", WEATHER["function"]["parameters"]),
        Tool("ping", None, {"type": "object", "properties": {}}),
    ]


@pytest.mark.parametrize("raw, expected", [
    ("auto", ToolChoice("auto")),
    ("none", ToolChoice("none")),
    ("required", ToolChoice("any")),
    ({"type": "function", "function": {"name": "get_weather"}}, ToolChoice("tool", "get_weather")),
])
def test_tool_choice(raw, expected):
    assert decode_request(body(tools=[WEATHER], tool_choice=raw)).tool_choice == expected


def test_parallel_tool_calls_false_disables_parallel():
    req = decode_request(body(tools=[WEATHER], parallel_tool_calls=False))
    assert req.tool_choice == ToolChoice("auto", disable_parallel=True)
    req = decode_request(body(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False))
    assert req.tool_choice == ToolChoice("any", disable_parallel=True)
    assert decode_request(body(tools=[WEATHER], parallel_tool_calls=True)).tool_choice is None


@pytest.mark.parametrize("raw, expected", [
    ({"type": "text"}, ResponseFormat("text")),
    ({"type": "json_object"}, ResponseFormat("json_object")),
    ({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
     ResponseFormat("json_schema", schema={"type": "object"}, name="answer", strict=True)),
])
def test_response_format(raw, expected):
    assert decode_request(body(response_format=raw)).response_format == expected


def test_stream_and_include_usage():
    req = decode_request(body(stream=True, stream_options={"include_usage": True}))
    assert req.stream is True and req.extra == {"include_usage": True}
    assert decode_request(body(stream=True, stream_options={"include_usage": False})).extra == {}


def test_unknown_fields_go_to_extra_untouched():
    extras = {"frequency_penalty": 0.5, "presence_penalty": -1, "logit_bias": {"50256": -100},
              "logprobs": True, "top_logprobs": 3, "metadata": {"a": "b"}, "reasoning_effort": "low"}
    assert decode_request(body(**extras)).extra == extras


# ---- decode_request: errors --------------------------------------------------------------

TOOL_TURN = [{"role": "user", "content": "x"},
             {"role": "assistant", "content": None, "tool_calls": [call("c1", "f", "{}")]}]


@pytest.mark.parametrize("data, param, fragment", [
    ([1, 2], None, "JSON object"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model", "model"),
    (body(model=""), "model", "empty string"),
    (body(model=5), "model", "expected a string"),
    ({"model": "m"}, "messages", "Missing required parameter"),
    (body(messages=[]), "messages", "empty array"),
    (body(messages="hi"), "messages", "expected an array"),
    (body(messages=["hi"]), "messages[0]", "expected an object"),
    (body(messages=[{"content": "x"}]), "messages[0].role", "Missing"),
    (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "robot"),
    (body(messages=[{"role": "user"}]), "messages[0].content", "Missing"),
    (body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "string or array"),
    (body(messages=[{"role": "user", "content": []}]), "messages[0].content", "empty array"),
    (body(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages[0].content[0].type", "video"),
    (body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
     "messages[0].content[0].type", "not supported"),
    (body(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text", "Missing"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
     "messages[0].content[0].image_url.url", "image URL"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://x/y.png", "detail": "ultra"}}]}]), "messages[0].content[0].image_url.detail", "ultra"),
    (body(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]),
     "messages[0].content[0].type", "image_url"),
    (body(messages=[{"role": "assistant", "content": None}]), "messages[0].content", "Missing"),
    (body(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": None,
                                                        "tool_calls": [call("c1", "f", "{not json")]}]),
     "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
    (body(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        call("c1", "f", "[1]")]}]), "messages[1].tool_calls[0].function.arguments", "JSON object"),
    (body(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"arguments": "{}"}}]}]),
     "messages[1].tool_calls[0].function.name", "Missing"),
    (body(messages=[{"role": "tool", "tool_call_id": "c9", "content": "r"}]), "messages[0].tool_call_id", "c9"),
    (body(messages=[*TOOL_TURN, {"role": "tool", "content": "r"}]), "messages[2].tool_call_id", "Missing"),
    (body(messages=[*TOOL_TURN, {"role": "user", "content": "y"}]), "messages[2].role", "c1"),
    (body(messages=TOOL_TURN), "messages", "tool_call_ids did not have response"),
    (body(n=2), "n", "n=1"),
    (body(temperature=2.5), "temperature", "maximum of 2"),
    (body(temperature=-0.1), "temperature", "minimum of 0"),
    (body(temperature="hot"), "temperature", "a number"),
    (body(top_p=1.5), "top_p", "maximum of 1"),
    (body(max_tokens=0), "max_tokens", "minimum of 1"),
    (body(max_completion_tokens=1.5), "max_completion_tokens", "an integer"),
    (body(max_tokens=True), "max_tokens", "a boolean"),
    (body(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
    (body(stop=[1]), "stop[0]", "a string"),
    (body(seed="x"), "seed", "an integer"),
    (body(stream="yes"), "stream", "a boolean"),
    (body(stream_options={"include_usage": True}), "stream_options", "only allowed when 'stream'"),
    (body(frequency_penalty=3), "frequency_penalty", "maximum of 2"),
    (body(tools=[]), "tools", "empty array"),
    (body(tools=[{"type": "retrieval"}]), "tools[0].type", "retrieval"),
    (body(tools=[{"type": "function"}]), "tools[0].function", "Missing"),
    (body(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "tools[0].function.name", "bad name!"),
    (body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
     "tools[0].function.parameters", "an object"),
    (body(tool_choice="always", tools=[WEATHER]), "tool_choice", "always"),
    (body(tool_choice="required"), "tool_choice", "only allowed when 'tools'"),
    (body(tool_choice=3, tools=[WEATHER]), "tool_choice", "string or object"),
    (body(tool_choice={"type": "function", "function": {"name": "nope"}}, tools=[WEATHER]),
     "tool_choice.function.name", "nope"),
    (body(parallel_tool_calls="no"), "parallel_tool_calls", "a boolean"),
    (body(response_format={"type": "xml"}), "response_format.type", "xml"),
    (body(response_format={"type": "json_schema"}), "response_format.json_schema", "Missing"),
    (body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
     "response_format.json_schema.name", "Missing"),
    (body(response_format="json"), "response_format", "an object"),
])
def test_invalid_requests_name_the_parameter(data, param, fragment):
    with pytest.raises(E.InvalidRequest) as info:
        decode_request(data)
    assert info.value.status == 400
    assert info.value.param == param
    assert fragment in info.value.message


# ---- encode_request ---------------------------------------------------------------------


def canonical_request(**kw) -> Request:
    base = dict(
        model="alias", system="be brief", max_tokens=64, temperature=0.3, top_p=0.9,
        stop=["END"], seed=3, user="u",
        messages=[
            Message("user", [TextBlock("look"), ImageBlock(media_type="image/jpeg", data=PNG_B64, detail="high"),
                             ImageBlock(url="https://example.com/a.png")]),
            Message("assistant", [ThinkingBlock("hmm", signature="sig"), TextBlock("calling"),
                                  ToolUseBlock("t1", "get_weather", {"city": "Zürich", "n": [1, 2]})]),
            Message("user", [TextBlock("also this"), ToolResultBlock("t1", [TextBlock("sunny")])]),
        ],
        tools=[Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice=ToolChoice("tool", "get_weather", disable_parallel=True),
        response_format=ResponseFormat("json_schema", {"type": "object"}, "out", True),
    )
    base.update(kw)
    return Request(**base)


def test_encode_request_fields():
    out = encode_request(canonical_request(), "gpt-4o-mini", stream=False)
    assert out["model"] == "gpt-4o-mini"
    assert out["max_tokens"] == 64 and "max_completion_tokens" not in out
    assert (out["temperature"], out["top_p"], out["stop"], out["seed"], out["user"]) == (0.3, 0.9, ["END"], 3, "u")
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert out["parallel_tool_calls"] is False
    assert out["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {"type": "object"}, "strict": True}}
    assert "stream" not in out and "stream_options" not in out


def test_encode_request_messages():
    msgs = encode_request(canonical_request(), "m", stream=False)["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1] == {"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG_B64}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    # thinking dropped; arguments compact JSON, unicode kept
    assert msgs[2] == {"role": "assistant", "content": "calling", "tool_calls": [
        {"id": "t1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Zürich","n":[1,2]}'}}]}
    # the tool result comes before the rest of its user turn
    assert msgs[3] == {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
    assert msgs[4] == {"role": "user", "content": "also this"}
    assert len(msgs) == 5


def test_encode_tool_only_assistant_has_null_content_and_tool_images_follow():
    req = Request(model="m", messages=[
        Message("user", [TextBlock("go")]),
        Message("assistant", [ToolUseBlock("t1", "shot", {})]),
        Message("user", [ToolResultBlock("t1", [TextBlock("here"), ImageBlock(media_type="image/png", data="AA==")])]),
    ])
    msgs = encode_request(req, "m", stream=False)["messages"]
    assert msgs[1]["content"] is None and msgs[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": "here"}
    assert msgs[3] == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}


def test_encode_stream_adds_usage_option_and_drop_renames_max_tokens():
    req = canonical_request()
    out = encode_request(req, "m", stream=True)
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    out = encode_request(req, "o1", stream=True, drop=("max_tokens", "stream_options", "seed", "top_p"))
    assert out["max_completion_tokens"] == 64
    assert not {"max_tokens", "stream_options", "seed", "top_p"} & out.keys()
    assert out["stream"] is True


def test_encode_merges_extra_but_not_include_usage():
    req = canonical_request(extra={"frequency_penalty": 0.2, "include_usage": True, "logit_bias": {"1": 2}})
    out = encode_request(req, "m", stream=False, drop=("logit_bias",))
    assert out["frequency_penalty"] == 0.2
    assert "include_usage" not in out and "logit_bias" not in out


@pytest.mark.parametrize("choice, wire", [
    (ToolChoice("auto"), "auto"), (ToolChoice("none"), "none"), (ToolChoice("any"), "required")])
def test_encode_tool_choice_words(choice, wire):
    out = encode_request(canonical_request(tool_choice=choice), "m", stream=False)
    assert out["tool_choice"] == wire and "parallel_tool_calls" not in out


def test_wire_round_trip_keeps_meaning():
    data = body(
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {
                "url": f"data:image/webp;base64,{PNG_B64}", "detail": "auto"}}]},
            {"role": "assistant", "content": "ok", "tool_calls": [call("c1", "get_weather", '{"city": "Rome"}')]},
            {"role": "tool", "tool_call_id": "c1", "content": "warm"},
            {"role": "user", "content": "and?"},
        ],
        tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, temperature=1.0, top_p=0.5,
        max_completion_tokens=99, stop=["x"], seed=1, user="me", presence_penalty=0.1,
        response_format={"type": "json_object"}, stream=True, stream_options={"include_usage": True})
    req = decode_request(copy.deepcopy(data))
    again = decode_request(encode_request(req, req.model, stream=True))
    assert again == req


def test_canonical_round_trip_keeps_meaning():
    req = canonical_request()
    again = decode_request(encode_request(req, "alias", stream=False))
    # thinking is dropped on the way to OpenAI; the tool result leads its user turn
    req.messages[1].content.pop(0)
    req.messages[2].content.reverse()
    assert again == req


# ---- responses --------------------------------------------------------------------------


def completion(message, finish="stop", usage=None):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage}


def test_decode_response_text_and_usage_with_cached_tokens():
    resp = decode_response(completion(
        {"role": "assistant", "content": "Hello"}, "stop",
        {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
         "prompt_tokens_details": {"cached_tokens": 800},
         "completion_tokens_details": {"reasoning_tokens": 20}}))
    assert resp.id == "chatcmpl-1" and resp.model == "gpt-4o" and resp.created == 1700000000
    assert resp.content == [TextBlock("Hello")] and resp.stop_reason == "end_turn"
    assert resp.usage == Usage(input_tokens=200, output_tokens=50, cache_read_tokens=800, reasoning_tokens=20)


def test_decode_response_tool_calls():
    resp = decode_response(completion({"role": "assistant", "content": None, "tool_calls": [
        call("c1", "get_weather", '{"city":"Paris"}'), call("c2", "get_weather", '{"city":"Oslo"}')]},
        "tool_calls", {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}))
    assert resp.content == [ToolUseBlock("c1", "get_weather", {"city": "Paris"}),
                            ToolUseBlock("c2", "get_weather", {"city": "Oslo"})]
    assert resp.stop_reason == "tool_use" and resp.usage == Usage(input_tokens=5, output_tokens=3)


@pytest.mark.parametrize("finish, stop", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("function_call", "tool_use"), ("content_filter", "content_filter"), (None, "end_turn")])
def test_decode_finish_reasons(finish, stop):
    assert decode_response(completion({"role": "assistant", "content": "x"}, finish)).stop_reason == stop


def test_decode_reasoning_content_as_thinking():
    resp = decode_response(completion({"role": "assistant", "content": "4", "reasoning_content": "2+2"}))
    assert resp.content == [ThinkingBlock("2+2"), TextBlock("4")]


@pytest.mark.parametrize("data", [
    [], "x", {}, {"choices": []}, {"choices": [{"index": 0}]}, {"error": {"message": "boom"}},
    completion({"role": "assistant", "content": None, "tool_calls": [call("c", "f", "{oops")]}),
    completion({"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}),
    completion({"role": "assistant", "content": 5}),
])
def test_decode_malformed_response_is_upstream_error(data):
    with pytest.raises(E.UpstreamError) as info:
        decode_response(data)
    assert info.value.status == 502


@pytest.mark.parametrize("stop, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("content_filter", "content_filter")])
def test_encode_response_finish_reasons(stop, finish):
    resp = Response("r1", "up", [TextBlock("x")], stop_reason=stop)
    assert encode_response(resp, "alias")["choices"][0]["finish_reason"] == finish


def test_encode_response_is_a_valid_chat_completion():
    resp = Response("chatcmpl-abc", "upstream-model", [TextBlock("Hi "), TextBlock("there")], created=1700000001,
                    usage=Usage(input_tokens=200, output_tokens=50, cache_read_tokens=800, reasoning_tokens=20))
    data = encode_response(resp, "alias")
    parsed = ChatCompletion.model_validate(data)
    assert parsed.id == "chatcmpl-abc" and parsed.model == "alias" and parsed.created == 1700000001
    assert parsed.object == "chat.completion" and parsed.system_fingerprint is None
    msg = parsed.choices[0].message
    assert msg.content == "Hi there" and msg.tool_calls is None and msg.refusal is None
    assert parsed.usage.prompt_tokens == 1000 and parsed.usage.completion_tokens == 50
    assert parsed.usage.total_tokens == 1050
    assert parsed.usage.prompt_tokens_details.cached_tokens == 800
    assert parsed.usage.completion_tokens_details.reasoning_tokens == 20
    assert "tool_calls" not in data["choices"][0]["message"]


def test_encode_response_tool_calls_and_round_trip():
    resp = Response("id1", "m", [ToolUseBlock("c1", "f", {"a": "ü"}), ToolUseBlock("c2", "g", {})],
                    stop_reason="tool_use", usage=Usage(input_tokens=3, output_tokens=4, cache_read_tokens=2))
    data = encode_response(resp, "m")
    parsed = ChatCompletion.model_validate(data)
    msg = parsed.choices[0].message
    assert msg.content is None and parsed.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("c1", "f", {"a": "ü"}), ("c2", "g", {})]
    back = decode_response(data)
    assert (back.content, back.stop_reason, back.usage) == (resp.content, "tool_use", resp.usage)


def test_encode_response_sets_created_when_missing():
    assert encode_response(Response("i", "m", [TextBlock("x")]), "m")["created"] > 1_600_000_000


# ---- streams ----------------------------------------------------------------------------

ARGS = {"city": "Reykjavík", "days": [1, 2], "q": "say \"hi\" {x}"}


def canonical_stream(usage=Usage(input_tokens=5, output_tokens=9, cache_read_tokens=4, reasoning_tokens=2)):
    args = orjson.dumps(ARGS).decode()
    return [
        MessageStart("chatcmpl-s1", "up", created=1700000002),
        BlockStart(0, ThinkingBlock("")), ThinkingDelta(0, "let me "), ThinkingDelta(0, "think"),
        ThinkingDelta(0, "", signature="sig"), BlockStop(0),
        BlockStart(1, TextBlock("")), TextDelta(1, "Hello, "), TextDelta(1, "wörld"), BlockStop(1),
        BlockStart(2, ToolUseBlock("c1", "get_weather", {})),
        *[ToolArgsDelta(2, args[i:i + 5]) for i in range(0, len(args), 5)], BlockStop(2),
        BlockStart(3, ToolUseBlock("c2", "ping", {})), ToolArgsDelta(3, "{}"), BlockStop(3),
        MessageEnd("tool_use", usage),
    ]


def encode_all(events, include_usage=True) -> bytes:
    enc = StreamEncoder("alias", include_usage=include_usage)
    return b"".join(enc.event(ev) for ev in events) + enc.end()


def payloads(raw: bytes) -> list[bytes]:
    parser = SSEParser()
    return [data for _, data in parser.feed(raw) + parser.close()]


def test_stream_encoder_chunks_validate_and_share_identity():
    frames = payloads(encode_all(canonical_stream()))
    assert frames[-1] == b"[DONE]"
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(f)) for f in frames[:-1]]
    assert {(c.id, c.created, c.model, c.object) for c in chunks} == {
        ("chatcmpl-s1", 1700000002, "alias", "chat.completion.chunk")}
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    reasoning = "".join(orjson.loads(f)["choices"][0]["delta"].get("reasoning_content", "")
                        for f in frames[:-2])
    assert reasoning == "let me think"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, wörld"
    starts = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [] if tc.id]
    assert [(t.index, t.id, t.type, t.function.name, t.function.arguments) for t in starts] == [
        (0, "c1", "function", "get_weather", ""), (1, "c2", "function", "ping", "")]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    last = chunks[-1]
    assert last.choices == [] and last.usage.prompt_tokens == 9 and last.usage.completion_tokens == 9
    assert last.usage.prompt_tokens_details.cached_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_encoder_without_usage_has_no_usage_chunk():
    frames = payloads(encode_all(canonical_stream(), include_usage=False))
    chunks = [orjson.loads(f) for f in frames[:-1]]
    assert all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


def test_stream_round_trip_byte_by_byte():
    raw = encode_all(canonical_stream())
    parser, decoder, events = SSEParser(), StreamDecoder(), []
    for i in range(len(raw)):
        for name, data in parser.feed(raw[i:i + 1]):
            events.extend(decoder.feed(name, data))
    for name, data in parser.close():
        events.extend(decoder.feed(name, data))
    events.extend(decoder.close())
    assert events[0] == MessageStart("chatcmpl-s1", "alias", created=1700000002)
    assert [type(e).__name__ for e in events].count("MessageEnd") == 1
    assert events[-1] == MessageEnd("tool_use", canonical_stream()[-1].usage)
    assert "".join(e.text for e in events if isinstance(e, ThinkingDelta)) == "let me think"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello, wörld"
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [type(s.block).__name__ for s in starts] == ["ThinkingBlock", "TextBlock", "ToolUseBlock", "ToolUseBlock"]
    assert [s.index for s in starts] == [0, 1, 2, 3]
    assert [e.index for e in events if isinstance(e, BlockStop)] == [0, 1, 2, 3]
    args = {i: "".join(e.partial_json for e in events if isinstance(e, ToolArgsDelta) and e.index == i)
            for i in (2, 3)}
    assert orjson.loads(args[2]) == ARGS and orjson.loads(args[3]) == {}


def test_stream_encoder_gives_known_tool_input_at_start():
    enc = StreamEncoder("m")
    enc.event(MessageStart("i", "m"))
    chunk = orjson.loads(payloads(enc.event(BlockStart(0, ToolUseBlock("c", "f", {"a": 1}))))[0])
    assert chunk["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}


def test_stream_encoder_error_frame():
    enc = StreamEncoder("m")
    frame = enc.error(E.Overloaded("busy", status=529))
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame[6:]) == {"error": {"message": "busy", "type": "server_error",
                                                 "param": None, "code": "overloaded"}}
    assert enc.end() == b"data: [DONE]\n\n"


async def test_openai_sdk_reads_encoder_output_and_raises_on_error_frame():
    import openai
    from aiohttp import web

    events = canonical_stream()[:10]  # up to the text block: then the upstream fails

    async def handler(request):
        enc = StreamEncoder((await request.json())["model"])
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for ev in events:
            await resp.write(enc.event(ev))
        await resp.write(enc.error(E.UpstreamError("upstream went away")))
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    text = ""
    try:
        with pytest.raises(openai.APIError) as info:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            async for chunk in stream:
                text += chunk.choices[0].delta.content or ""
        assert "upstream went away" in str(info.value)
        assert text == "Hello, wörld"
    finally:
        await client.close()
        await runner.cleanup()


def chunk(delta=None, finish=None, usage=None, choices=True, **extra):
    c = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
         "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage is not None:
        c["usage"] = usage
    c.update(extra)
    return orjson.dumps(c)


def test_decoder_holds_message_end_for_the_usage_chunk():
    dec = StreamDecoder()
    out = dec.feed(None, chunk({"role": "assistant", "content": ""}))
    assert out == [MessageStart("c-1", "up", created=1)]
    assert dec.feed(None, chunk({"content": "Hi"})) == [BlockStart(0, TextBlock("")), TextDelta(0, "Hi")]
    assert dec.feed(None, chunk({}, "length")) == []
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
             "prompt_tokens_details": {"cached_tokens": 6}}
    assert dec.feed(None, chunk(usage=usage, choices=False)) == []
    assert dec.feed(None, b"[DONE]") == [
        BlockStop(0), MessageEnd("max_tokens", Usage(input_tokens=4, output_tokens=2, cache_read_tokens=6))]
    assert dec.close() == [] and dec.feed(None, chunk({"content": "late"})) == []


def test_decoder_close_after_finish_without_done_ends_the_message():
    dec = StreamDecoder()
    dec.feed(None, chunk({"content": "x"}))
    dec.feed(None, chunk({}, "stop"))
    assert dec.close() == [BlockStop(0), MessageEnd("end_turn", Usage())]


def test_decoder_close_before_finish_is_upstream_error():
    dec = StreamDecoder()
    dec.feed(None, chunk({"content": "partial"}))
    with pytest.raises(E.UpstreamError, match="ended before it finished"):
        dec.close()


def test_decoder_tool_call_in_first_chunk_and_reasoning_field():
    dec = StreamDecoder()
    events = dec.feed(None, chunk({"role": "assistant", "content": None, "reasoning": "hmm"}))
    events += dec.feed(None, chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                    "function": {"name": "f", "arguments": ""}}]}))
    events += dec.feed(None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    events += dec.feed(None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": '1}'}}]}))
    events += dec.feed(None, chunk({}, "stop"))
    events += dec.feed(None, b"[DONE]")
    assert events[1:] == [
        BlockStart(0, ThinkingBlock("")), ThinkingDelta(0, "hmm"), BlockStop(0),
        BlockStart(1, ToolUseBlock("c1", "f", {})), ToolArgsDelta(1, '{"a":'), ToolArgsDelta(1, "1}"),
        BlockStop(1), MessageEnd("tool_use", Usage())]


@pytest.mark.parametrize("error, cls, status", [
    ({"message": "slow down", "type": "rate_limit_error", "code": None}, E.RateLimited, 429),
    ({"message": "bad", "type": "invalid_request_error", "param": "x"}, E.InvalidRequest, 400),
    ({"message": "boom", "type": "server_error"}, E.UpstreamError, 500),
    ({"message": "vllm", "type": "BadRequestError", "code": 400}, E.InvalidRequest, 400),
    ({"message": "?"}, E.UpstreamError, 502),
])
def test_decoder_error_chunk_raises_canonical_error(error, cls, status):
    dec = StreamDecoder()
    dec.feed(None, chunk({"content": "a"}))
    with pytest.raises(cls) as info:
        dec.feed(None, orjson.dumps({"error": error}))
    assert info.value.status == status and info.value.message == error["message"]


@pytest.mark.parametrize("data", [b"{not json", b"[1]"])
def test_decoder_rejects_malformed_chunks(data):
    with pytest.raises(E.UpstreamError):
        StreamDecoder().feed(None, data)


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("err, status, type_", [
    (E.InvalidRequest("bad", param="messages[0]"), 400, "invalid_request_error"),
    (E.AuthenticationFailed("who"), 401, "authentication_error"),
    (E.PaymentRequired("broke"), 402, "insufficient_quota"),
    (E.PermissionDenied("no"), 403, "permission_error"),
    (E.NotFound("gone"), 404, "not_found_error"),
    (E.RequestTooLarge("big"), 413, "invalid_request_error"),
    (E.RateLimited("slow", retry_after=3), 429, "rate_limit_error"),
    (E.InternalError("bug"), 500, "server_error"),
    (E.UpstreamError("up"), 502, "api_error"),
    (E.Overloaded("busy", status=529), 529, "server_error"),
    (E.UpstreamTimeout("late"), 504, "server_error"),
])
def test_encode_error(err, status, type_):
    got_status, data = encode_error(err)
    assert got_status == status
    assert data["error"]["type"] == type_ and data["error"]["message"] == err.message
    assert data["error"]["param"] == err.param and set(data["error"]) == {"message", "type", "param", "code"}


def test_encode_error_hides_non_gateway_exceptions():
    status, data = encode_error(RuntimeError("secret traceback detail"))
    assert status == 500 and "secret" not in data["error"]["message"]


@pytest.mark.parametrize("status, raw, cls, message, param", [
    (400, b'{"error": {"message": "Bad thing", "type": "invalid_request_error", "param": "messages", '
          b'"code": null}}', E.InvalidRequest, "Bad thing", "messages"),
    (401, b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}',
     E.AuthenticationFailed, "Incorrect API key", None),
    (429, b'{"error": {"message": "Rate limit", "type": "requests"}}', E.RateLimited, "Rate limit", None),
    (503, b"<html>Service Unavailable</html>", E.Overloaded, "<html>Service Unavailable</html>", None),
    (502, b"", E.UpstreamError, "upstream returned HTTP 502", None),
    (400, b'{"detail": "vllm says no"}', E.InvalidRequest, "vllm says no", None),
    (422, b'{"error": "plain string"}', E.InvalidRequest, "plain string", None),
    (529, b'[1, 2]', E.Overloaded, "upstream returned HTTP 529", None),
])
def test_decode_error(status, raw, cls, message, param):
    err = decode_error(status, raw)
    assert type(err) is cls and err.status == status
    assert err.message == message and err.param == param


def test_error_round_trip_keeps_status_class_and_param():
    for err in (E.InvalidRequest("x", param="tools[0]"), E.PaymentRequired("b"), E.Overloaded("o", status=529)):
        status, data = encode_error(err)
        back = decode_error(status, orjson.dumps(data))
        assert (type(back), back.status, back.message, back.param) == (type(err), err.status, err.message, err.param)


def test_decoder_done_without_finish_reason_ends_the_turn():
    dec = StreamDecoder()
    dec.feed(None, chunk({"content": "x"}))
    assert dec.feed(None, b"[DONE]") == [BlockStop(0), MessageEnd("end_turn", Usage())]


def test_prebuilt_first_and_last_chunk_choices_match_the_general_encoding():
    from modelmart.dialects.openai_chat.stream import _FINISH_CHOICES, _ROLE_CHOICES

    def choices(delta, finish):
        return orjson.dumps([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    assert _ROLE_CHOICES == choices({"role": "assistant", "content": ""}, None)
    assert all(raw == choices({}, finish) for finish, raw in _FINISH_CHOICES.items())


@pytest.mark.parametrize("data", [b"[DONE]", b" [DONE] ", b"[DONE]\r"])
def test_done_marker_ends_the_stream(data):
    dec = StreamDecoder()
    dec.feed(None, chunk({"content": "x"}))
    assert type(dec.feed(None, data)[-1]) is MessageEnd


def test_something_else_that_starts_like_done_is_not_the_end():
    dec = StreamDecoder()
    dec.feed(None, chunk({"content": "x"}))
    with pytest.raises(E.UpstreamError):
        dec.feed(None, b"[DONE] and more")
