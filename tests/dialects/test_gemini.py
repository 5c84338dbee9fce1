"""The Gemini dialect: requests, responses, streams and errors, both ways."""

from __future__ import annotations

import orjson
import pytest

from modelmart.core import errors as E
from modelmart.core.types import (
    BlockStart, BlockStop, ImageBlock, Message, MessageEnd, MessageStart, Request,
    ResponseFormat, Response, TextBlock, TextDelta, ThinkingBlock, ThinkingDelta, Tool,
    ToolArgsDelta, ToolChoice, ToolResultBlock, ToolUseBlock, Usage,
)
from modelmart.dialects.gemini import (
    StreamDecoder, StreamEncoder, decode_error, decode_request, decode_response,
    encode_error, encode_request, encode_response,
)
from modelmart.dialects.gemini.parts import PLACEHOLDER_SIGNATURE, SYNTHETIC_PREFIX
from modelmart.dialects.sse import SSEParser

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAE="
DECL = {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "OBJECT", "properties": {
            "city": {"type": "STRING"}, "days": {"type": "INTEGER", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "max_items": 3}},
            "required": ["city"], "propertyOrdering": ["city", "days", "tags"]}}
JSON_SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": ["integer", "null"]},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}, "required": ["city"]}


def user(text="hi"):
    return {"role": "user", "parts": [{"text": text}]}


def body(**kw):
    return {"contents": [user()], **kw}


# ---- decode_request ---------------------------------------------------------------------


def test_minimal_request_model_from_url():
    req = decode_request(body(), "models/gemini-2.5-flash", stream=True)
    assert req.model == "gemini-2.5-flash" and req.stream is True
    assert req.messages == [Message("user", [TextBlock("hi")])] and req.extra == {}


def test_camel_and_snake_case_are_both_accepted():
    camel = decode_request({
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]}],
        "generationConfig": {"maxOutputTokens": 9, "stopSequences": ["x"], "topK": 4}}, "m")
    snake = decode_request({
        "system_instruction": {"parts": [{"text": "sys"}]},
        "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": PNG_B64}}]}],
        "generation_config": {"max_output_tokens": 9, "stop_sequences": ["x"], "top_k": 4}}, "m")
    assert camel == snake
    assert camel.system == "sys" and camel.max_tokens == 9 and camel.stop == ["x"] and camel.top_k == 4
    assert camel.messages[0].content == [ImageBlock(media_type="image/png", data=PNG_B64)]


def test_tools_openapi_schema_becomes_json_schema_and_tool_config():
    req = decode_request(body(tools=[{"functionDeclarations": [DECL, {"name": "noop"}]}],
                              toolConfig={"functionCallingConfig": {"mode": "ANY",
                                                                    "allowedFunctionNames": ["get_weather"]}}), "m")
    assert req.tools == [Tool("get_weather", "Weather", JSON_SCHEMA),
                         Tool("noop", None, {"type": "object", "properties": {}})]
    assert req.tool_choice == ToolChoice("tool", "get_weather")


@pytest.mark.parametrize("config, choice, names", [
    ({"mode": "AUTO"}, ToolChoice("auto"), ["a", "b", "c"]),
    ({"mode": "NONE"}, ToolChoice("none"), ["a", "b", "c"]),
    ({"mode": "ANY"}, ToolChoice("any"), ["a", "b", "c"]),
    ({"mode": "ANY", "allowedFunctionNames": ["a", "c"]}, ToolChoice("any"), ["a", "c"]),
])
def test_function_calling_modes(config, choice, names):
    tools = [{"functionDeclarations": [{"name": n} for n in "abc"]}]
    req = decode_request(body(tools=tools, toolConfig={"functionCallingConfig": config}), "m")
    assert req.tool_choice == choice and [t.name for t in req.tools] == names


def test_generation_config_and_extras():
    req = decode_request(body(generationConfig={
        "temperature": 0.5, "topP": 0.8, "seed": 3, "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
        "thinkingConfig": {"thinkingBudget": 128}}, safetySettings=[{"category": "X", "threshold": "Y"}]), "m")
    assert (req.temperature, req.top_p, req.seed) == (0.5, 0.8, 3)
    assert req.response_format == ResponseFormat("json_schema", schema={
        "type": "object", "properties": {"a": {"type": "string"}}})
    assert req.extra == {"safetySettings": [{"category": "X", "threshold": "Y"}],
                         "generationConfig": {"thinkingConfig": {"thinkingBudget": 128}}}
    plain_json = decode_request(body(generationConfig={"responseMimeType": "application/json"}), "m")
    assert plain_json.response_format == ResponseFormat("json_object")


def test_function_calls_without_ids_get_synthetic_ids_matched_by_name():
    req = decode_request({"contents": [
        user("weather?"),
        {"role": "model", "parts": [
            {"text": "thinking...", "thought": True},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG"},
            {"functionCall": {"name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]}, "m")
    thought, sig, weather, time_call = req.messages[1].content
    assert thought == ThinkingBlock("thinking...") and sig == ThinkingBlock("", signature="SIG")
    assert weather.id.startswith(SYNTHETIC_PREFIX) and weather.id != time_call.id
    assert req.messages[2] == Message("user", [
        ToolResultBlock(time_call.id, [TextBlock("noon")]),
        ToolResultBlock(weather.id, [TextBlock('{"temp":21}')]),
        TextBlock("thanks")])


def test_function_call_ids_given_by_gemini_are_kept():
    req = decode_request({"contents": [
        user(), {"role": "model", "parts": [{"functionCall": {"id": "x1", "name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "x1", "name": "f",
                                                         "response": {"error": "boom"}}}]}]}, "m")
    assert req.messages[1].content == [ToolUseBlock("x1", "f", {})]
    assert req.messages[2].content == [ToolResultBlock("x1", [TextBlock("boom")], is_error=True)]


@pytest.mark.parametrize("data, param, fragment", [
    ({}, "contents", "expected an array"),
    ({"contents": []}, "contents", "must not be empty"),
    (body(contents=[{"role": "system", "parts": [{"text": "x"}]}]), "contents[0].role", "invalid value"),
    (body(contents=[{"role": "user", "parts": [{"inlineData": {"mimeType": "video/mp4", "data": "AA"}}]}]),
     "contents[0].parts[0].inlineData.mimeType", "image, PDF or text media"),
    (body(contents=[{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]),
     "contents[0].parts[0].functionResponse", "does not answer"),
    (body(tools=[{"googleSearch": {}}]), "tools[0]", "not supported"),
    (body(generationConfig={"candidateCount": 2}), "generationConfig.candidateCount", "candidateCount=1"),
    (body(generationConfig={"temperature": 5}), "generationConfig.temperature", "out of range"),
    (body(generationConfig={"responseMimeType": "text/x.enum"}), "generationConfig.responseMimeType", "invalid"),
    (body(toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["zz"]}}),
     "toolConfig.functionCallingConfig.allowedFunctionNames", "undeclared"),
])
def test_bad_requests_are_400s_naming_the_field(data, param, fragment):
    with pytest.raises(E.InvalidRequest) as info:
        decode_request(data, "m")
    assert info.value.param == param and fragment in info.value.message
    status, err = encode_error(info.value)
    assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT"
    assert err["error"]["details"][0]["fieldViolations"][0]["field"] == param


# ---- encode_request ---------------------------------------------------------------------


def test_encode_request_round_trips_a_gemini_body():
    original = {
        "contents": [
            user("weather?"),
            {"role": "model", "parts": [{"text": "Checking."},
                                        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                                         "thoughtSignature": "SIG"}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "cold"}}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}}]}],
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "W",
                                             "parametersJsonSchema": JSON_SCHEMA}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}, "temperature": 0.2,
                             "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        "safetySettings": [],
    }
    req = decode_request(original, "gemini-x")
    assert encode_request(req, "gemini-x", stream=False) == original


def test_encode_request_from_another_dialect():
    req = Request(model="a", system="s", max_tokens=10, tool_choice=ToolChoice("any", disable_parallel=True),
                  tools=[Tool("f", None, {"type": "object"})], extra={"store": True},
                  messages=[Message("user", [TextBlock("q"), ImageBlock(media_type="image/png", data=PNG_B64)]),
                            Message("assistant", [ToolUseBlock("call_x", "f", {"a": 1}),
                                                  ToolUseBlock("call_y", "f", {})]),
                            Message("user", [ToolResultBlock("call_x", [TextBlock("r1")]),
                                             ToolResultBlock("call_y", [TextBlock("r2")])])])
    out = encode_request(req, "g", stream=True, drop=["store"])
    assert "store" not in out and out["generationConfig"] == {"maxOutputTokens": 10}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert out["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
    # the first call of the turn gets Google's placeholder signature; ids from elsewhere go along
    assert out["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "call_x"}, "thoughtSignature": PLACEHOLDER_SIGNATURE},
        {"functionCall": {"name": "f", "args": {}, "id": "call_y"}}]
    assert out["contents"][2]["parts"][1] == {"functionResponse": {"name": "f", "response": {"output": "r2"},
                                                                   "id": "call_y"}}


def test_encode_request_refuses_a_result_without_its_call():
    req = Request(model="a", messages=[Message("user", [ToolResultBlock("ghost", [TextBlock("x")])])])
    with pytest.raises(E.InvalidRequest, match="answers no earlier tool call"):
        encode_request(req, "g", stream=False)


# ---- responses --------------------------------------------------------------------------

GEMINI_REPLY = {
    "candidates": [{"content": {"role": "model", "parts": [
        {"text": "plan", "thought": True},
        {"text": "Sure."},
        {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "S1"}]},
        "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 1000, "cachedContentTokenCount": 800, "candidatesTokenCount": 30,
                      "thoughtsTokenCount": 20, "totalTokenCount": 1050},
    "modelVersion": "gemini-2.5-pro", "responseId": "abc",
}


def test_decode_response_usage_and_blocks():
    resp = decode_response(GEMINI_REPLY)
    assert resp.id == "abc" and resp.model == "gemini-2.5-pro" and resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=200, cache_read_tokens=800, output_tokens=50, reasoning_tokens=20)
    assert resp.content[:3] == [ThinkingBlock("plan"), TextBlock("Sure."), ThinkingBlock("", signature="S1")]
    assert resp.content[3].name == "f" and resp.content[3].input == {"x": 1}


def test_response_round_trip():
    resp = decode_response(GEMINI_REPLY)
    again = encode_response(resp, "gemini-2.5-pro")
    assert again["candidates"][0]["content"]["parts"] == GEMINI_REPLY["candidates"][0]["content"]["parts"]
    assert again["usageMetadata"] == GEMINI_REPLY["usageMetadata"]
    assert again["candidates"][0]["finishReason"] == "STOP"
    assert decode_response(again).usage == resp.usage


@pytest.mark.parametrize("finish, stop", [("MAX_TOKENS", "max_tokens"), ("SAFETY", "content_filter"),
                                          ("RECITATION", "content_filter"), ("MALFORMED_FUNCTION_CALL", "error"),
                                          ("OTHER", "end_turn")])
def test_finish_reasons(finish, stop):
    data = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": finish}]}
    assert decode_response(data).stop_reason == stop


def test_blocked_prompt_and_malformed_replies():
    blocked = decode_response({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}})
    assert blocked.content == [] and blocked.stop_reason == "content_filter" and blocked.usage.input_tokens == 4
    for bad in ({}, [], {"candidates": []}, {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}):
        with pytest.raises(E.UpstreamError):
            decode_response(bad)


def test_encode_response_for_max_tokens_and_foreign_ids():
    resp = Response(id="r1", model="up", content=[ToolUseBlock("toolu_1", "f", {})], stop_reason="max_tokens",
                    usage=Usage(input_tokens=1, output_tokens=2))
    data = encode_response(resp, "gemini-x")
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert data["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "f", "args": {}, "id": "toolu_1"}}]
    assert data["responseId"] == "r1" and data["modelVersion"] == "gemini-x"


# ---- streams ----------------------------------------------------------------------------

STREAM = [
    MessageStart("rid", "up"),
    BlockStart(0, ThinkingBlock("")), ThinkingDelta(0, "hmm"), BlockStop(0),
    BlockStart(1, TextBlock("")), TextDelta(1, "Hel"), TextDelta(1, "lo"), BlockStop(1),
    BlockStart(2, ThinkingBlock("")), ThinkingDelta(2, "", signature="SIG"), BlockStop(2),
    BlockStart(3, ToolUseBlock("call_gm_1", "f", {})), ToolArgsDelta(3, '{"a":'), ToolArgsDelta(3, " 1}"), BlockStop(3),
    BlockStart(4, ToolUseBlock("g-2", "g", {"b": 2})), BlockStop(4),
    MessageEnd("tool_use", Usage(input_tokens=3, output_tokens=9, cache_read_tokens=5, reasoning_tokens=4)),
]


def _encode(events, error=None) -> bytes:
    enc = StreamEncoder("gemini-x")
    out = b"".join(enc.event(e) for e in events)
    return out + (enc.error(error) if error else b"") + enc.end()


def _decode(raw: bytes) -> list:
    parser, dec = SSEParser(), StreamDecoder()
    out = [ev for name, data in parser.feed(raw) for ev in dec.feed(name, data)]
    return out + dec.close()


def test_stream_encoder_chunks():
    chunks = [orjson.loads(d) for _, d in SSEParser().feed(_encode(STREAM))]
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts[:3] == [[{"text": "hmm", "thought": True}], [{"text": "Hel"}], [{"text": "lo"}]]
    assert parts[3] == [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "SIG"}]
    assert parts[4] == [{"functionCall": {"name": "g", "args": {"b": 2}, "id": "g-2"}}]
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 8, "candidatesTokenCount": 5, "totalTokenCount": 17,
                                     "cachedContentTokenCount": 5, "thoughtsTokenCount": 4}
    assert all(c["responseId"] == "rid" and c["modelVersion"] == "gemini-x" for c in chunks)


def test_stream_round_trip_through_encoder_and_decoder():
    events = _decode(_encode(STREAM))
    assert events[0] == MessageStart("rid", "gemini-x")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello"
    assert [e.text for e in events if isinstance(e, ThinkingDelta) and e.text] == ["hmm"]
    assert [e.signature for e in events if isinstance(e, ThinkingDelta) and e.signature] == ["SIG"]
    starts = [e.block for e in events if isinstance(e, BlockStart) and isinstance(e.block, ToolUseBlock)]
    assert [s.name for s in starts] == ["f", "g"] and starts[1].id == "g-2"
    assert [orjson.loads(e.partial_json) for e in events if isinstance(e, ToolArgsDelta)] == [{"a": 1}, {"b": 2}]
    assert events[-1] == MessageEnd("tool_use", STREAM[-1].usage)
    # blocks are well nested: every start has its stop, indexes count up
    assert [e.index for e in events if isinstance(e, BlockStart)] == list(range(5))
    assert [e.index for e in events if isinstance(e, BlockStop)] == list(range(5))


def test_stream_decoder_keeps_the_last_usage_and_needs_a_finish():
    dec = StreamDecoder()
    dec.feed(None, b'{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":3}}')
    dec.feed(None, b'{"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"MAX_TOKENS"}],'
                   b'"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2}}')
    assert dec.close()[-1] == MessageEnd("max_tokens", Usage(input_tokens=3, output_tokens=2))
    cut = StreamDecoder()
    cut.feed(None, b'{"candidates":[{"content":{"parts":[{"text":"a"}]}}]}')
    with pytest.raises(E.UpstreamError, match="ended before it finished"):
        cut.close()
    with pytest.raises(E.UpstreamError, match="not JSON"):
        StreamDecoder().feed(None, b"{oops")


def test_stream_error_frame_round_trips_with_its_status():
    raw = _encode(STREAM[:3], error=E.RateLimited("quota", retry_after=3))
    assert raw.endswith(b'data: {"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}\n\n')
    with pytest.raises(E.RateLimited) as info:
        _decode(raw)
    assert info.value.status == 429 and info.value.message == "quota"
    with pytest.raises(E.Overloaded):
        StreamDecoder().feed(None, b'{"error":{"message":"later","status":"UNAVAILABLE"}}')


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("err, status, name", [
    (E.InvalidRequest("bad"), 400, "INVALID_ARGUMENT"), (E.AuthenticationFailed("who"), 401, "UNAUTHENTICATED"),
    (E.PermissionDenied("no"), 403, "PERMISSION_DENIED"), (E.NotFound("gone"), 404, "NOT_FOUND"),
    (E.RateLimited("slow"), 429, "RESOURCE_EXHAUSTED"), (E.UpstreamError("x"), 502, "UNAVAILABLE"),
    (E.InternalError("x"), 500, "INTERNAL"), (E.Overloaded("x"), 503, "UNAVAILABLE"),
    (E.UpstreamTimeout("x"), 504, "DEADLINE_EXCEEDED")])
def test_encode_error_round_trips(err, status, name):
    got_status, data = encode_error(err)
    assert got_status == status and data["error"] == {"code": status, "message": err.message, "status": name}
    back = decode_error(status, orjson.dumps(data))
    assert type(back) is type(err) or back.status == status
    assert back.status == status and back.message == err.message


def test_encode_error_hides_internals():
    status, data = encode_error(KeyError("secret"))
    assert status == 500 and "secret" not in orjson.dumps(data).decode()


def test_decode_error_reads_details_and_odd_bodies():
    body = {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}
    err = decode_error(400, orjson.dumps(body))
    assert isinstance(err, E.AuthenticationFailed) and err.status == 400
    as_array = decode_error(429, orjson.dumps([{"error": {"code": 429, "message": "q", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}]}}]))
    assert isinstance(as_array, E.RateLimited) and as_array.retry_after == 12.5
    html = decode_error(502, b"<html>bad gateway</html>")
    assert html.status == 502 and "bad gateway" in html.message
