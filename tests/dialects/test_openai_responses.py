"""The OpenAI Responses dialect (client surface): requests in, response objects and SSE
event streams out, checked against the openai SDK's own types and against the real SDK
reading our stream over loopback HTTP."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from modelmart.core import errors as E
from modelmart.core.types import (
    BlockStart, BlockStop, ImageBlock, Message, MessageEnd, MessageStart, Request,
    ResponseFormat, Response, TextBlock, TextDelta, ThinkingBlock, ThinkingDelta, Tool,
    ToolArgsDelta, ToolChoice, ToolResultBlock, ToolUseBlock, Usage,
)
from modelmart.dialects.openai_responses import (
    StreamDecoder, StreamEncoder, decode_request, decode_response, encode_error,
    encode_request, encode_response,
)
from modelmart.dialects.sse import SSEParser

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAE="
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}
EVENTS = TypeAdapter(ResponseStreamEvent)


def body(**kw):
    return {"model": "gpt-4.1", "input": "hi", **kw}


# ---- decode_request ---------------------------------------------------------------------


def test_string_input_and_settings():
    req = decode_request(body(instructions="be brief", max_output_tokens=50, temperature=0.3,
                              top_p=0.9, user="u1", store=True, metadata={"k": "v"}))
    assert req.messages == [Message("user", [TextBlock("hi")])]
    assert req.system == "be brief" and req.max_tokens == 50 and req.temperature == 0.3
    assert req.top_p == 0.9 and req.user == "u1" and req.stream is False
    assert req.extra == {"metadata": {"k": "v"}}  # store accepted, nothing kept


def test_item_list_with_tool_round_and_images():
    req = decode_request(body(input=[
        {"role": "developer", "content": "dev rules"},
        {"role": "user", "content": [
            {"type": "input_text", "text": "weather here?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
            {"type": "input_image", "image_url": "https://example.com/a.jpg"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "rain"}]},
        {"role": "user", "content": "thanks"},
    ], instructions="top", tools=[WEATHER]))
    assert req.system == "top\n\ndev rules"
    assert req.messages == [
        Message("user", [TextBlock("weather here?"),
                         ImageBlock(media_type="image/png", data=PNG_B64, detail="low"),
                         ImageBlock(url="https://example.com/a.jpg")]),
        Message("assistant", [TextBlock("Checking."), ToolUseBlock("c1", "get_weather", {"city": "Paris"}),
                              ToolUseBlock("c2", "get_weather", {})]),
        Message("user", [ToolResultBlock("c1", [TextBlock("sunny")]), ToolResultBlock("c2", [TextBlock("rain")]),
                         TextBlock("thanks")]),
    ]
    assert req.tools == [Tool("get_weather", "Weather for a city", WEATHER["parameters"])]


def test_reasoning_items_come_back_as_thinking_with_their_signature():
    req = decode_request(body(input=[
        {"role": "user", "content": "q"},
        {"type": "reasoning", "id": "rs_1", "summary": [],
         "content": [{"type": "reasoning_text", "text": "hmm"}], "encrypted_content": "SIG"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
    ]))
    assert req.messages[1] == Message("assistant", [ThinkingBlock("hmm", signature="SIG"), TextBlock("a")])


@pytest.mark.parametrize("choice, parallel, expected", [
    ("auto", None, ToolChoice("auto")),
    ("none", None, ToolChoice("none")),
    ("required", False, ToolChoice("any", disable_parallel=True)),
    ({"type": "function", "name": "get_weather"}, None, ToolChoice("tool", "get_weather")),
    (None, False, ToolChoice("auto", disable_parallel=True)),
])
def test_tool_choice(choice, parallel, expected):
    kw = {"tools": [WEATHER]}
    if choice is not None:
        kw["tool_choice"] = choice
    if parallel is not None:
        kw["parallel_tool_calls"] = parallel
    assert decode_request(body(**kw)).tool_choice == expected


@pytest.mark.parametrize("fmt, expected", [
    ({"type": "text"}, ResponseFormat("text")),
    ({"type": "json_object"}, ResponseFormat("json_object")),
    ({"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True},
     ResponseFormat("json_schema", schema={"type": "object"}, name="out", strict=True)),
])
def test_text_format(fmt, expected):
    assert decode_request(body(text={"format": fmt})).response_format == expected


@pytest.mark.parametrize("data, param, fragment", [
    (body(previous_response_id="resp_1"), "previous_response_id", "keeps no conversation state"),
    (body(conversation="conv_1"), "conversation", "keeps no conversation state"),
    (body(tools=[{"type": "web_search"}]), "tools[0].type", "'web_search' are not supported"),
    (body(input=[{"type": "item_reference", "id": "msg_1"}]), "input[0].type", "not supported"),
    (body(input=[{"type": "function_call_output", "call_id": "nope", "output": "x"}]),
     "input[0].call_id", "No tool call found"),
    (body(input=[{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]),
     "input[0].content[0].type", "not supported"),
    (body(tool_choice={"type": "function", "name": "other"}, tools=[WEATHER]), "tool_choice.name", "not found"),
    (body(temperature=3), "temperature", "greater than the maximum"),
    ({"input": "x"}, "model", "Missing required parameter"),
    (body(input=None), "input", "Missing required parameter"),
    (body(text={"format": {"type": "json_schema", "name": "x"}}), "text.format.schema", "Missing"),
])
def test_bad_requests_are_400s_naming_the_param(data, param, fragment):
    with pytest.raises(E.InvalidRequest) as info:
        decode_request(data)
    assert info.value.param == param and fragment in info.value.message
    status, err = encode_error(info.value)
    assert status == 400 and err["error"]["param"] == param
    assert err["error"]["type"] == "invalid_request_error"


def test_upstream_direction_is_honestly_unsupported():
    for call in (lambda: encode_request(decode_request(body()), "m", stream=False),
                 lambda: decode_response({}), lambda: StreamDecoder().feed(None, b"{}")):
        with pytest.raises(E.InvalidRequest, match="not supported as an upstream"):
            call()


# ---- encode_response --------------------------------------------------------------------


def _resp(**kw) -> Response:
    base = dict(id="resp_abc", model="up", created=1700000000, content=[TextBlock("Hello")],
                usage=Usage(input_tokens=20, output_tokens=9, cache_read_tokens=80, reasoning_tokens=4))
    base.update(kw)
    return Response(**base)


def test_encode_response_validates_with_the_sdk_and_echoes_the_request():
    req = decode_request(body(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                              instructions="sys", metadata={"a": "b"}, temperature=0.2,
                              text={"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}}))
    resp = _resp(content=[ThinkingBlock("think", signature="S"), TextBlock("Let me see."),
                          ToolUseBlock("call_1", "get_weather", {"city": "Oslo"})], stop_reason="tool_use")
    data = encode_response(resp, "gpt-4.1", request=req)
    sdk = SDKResponse.model_validate(data)
    assert sdk.id == "resp_abc" and sdk.status == "completed" and sdk.model == "gpt-4.1"
    assert sdk.output_text == "Let me see."
    kinds = [o.type for o in sdk.output]
    assert kinds == ["reasoning", "message", "function_call"]
    assert sdk.output[0].content[0].text == "think" and sdk.output[0].encrypted_content == "S"
    call = sdk.output[2]
    assert call.call_id == "call_1" and call.name == "get_weather" and orjson.loads(call.arguments) == {"city": "Oslo"}
    assert call.id.startswith("fc_") and sdk.output[1].id.startswith("msg_")
    assert sdk.usage.input_tokens == 100 and sdk.usage.input_tokens_details.cached_tokens == 80
    assert sdk.usage.output_tokens == 9 and sdk.usage.output_tokens_details.reasoning_tokens == 4
    assert sdk.usage.total_tokens == 109
    assert sdk.tool_choice == "required" and sdk.parallel_tool_calls is False
    assert sdk.tools[0].name == "get_weather" and sdk.instructions == "sys"
    assert sdk.metadata == {"a": "b"} and sdk.temperature == 0.2
    assert sdk.text.format.type == "json_schema"


def test_truncated_response_is_incomplete():
    data = encode_response(_resp(stop_reason="max_tokens"), "m")
    sdk = SDKResponse.model_validate(data)
    assert sdk.status == "incomplete" and sdk.incomplete_details.reason == "max_output_tokens"
    assert sdk.tool_choice == "auto" and sdk.tools == []  # defaults without the request


def test_encode_error_matches_chat_completions_shape():
    status, data = encode_error(E.RateLimited("slow down", retry_after=2))
    assert status == 429 and data == {"error": {"message": "slow down", "type": "rate_limit_error",
                                                "param": None, "code": "rate_limit_exceeded"}}
    status, data = encode_error(RuntimeError("secret internals"))
    assert status == 500 and "secret" not in data["error"]["message"]


# ---- stream -----------------------------------------------------------------------------

TOOL_STREAM = [
    MessageStart("resp_s1", "up"),
    BlockStart(0, ThinkingBlock("")), ThinkingDelta(0, "pondering"), ThinkingDelta(0, "", signature="SIG"),
    BlockStop(0),
    BlockStart(1, TextBlock("")), TextDelta(1, "Hel"), TextDelta(1, "lo"), BlockStop(1),
    BlockStart(2, ToolUseBlock("call_a", "get_weather", {})), ToolArgsDelta(2, '{"city":'),
    ToolArgsDelta(2, ' "Oslo"}'), BlockStop(2),
    BlockStart(3, ToolUseBlock("call_b", "get_weather", {"city": "Rome"})), BlockStop(3),
    MessageEnd("tool_use", Usage(input_tokens=5, output_tokens=12, cache_read_tokens=3, reasoning_tokens=2)),
]


def _frames(events, request=None, error=None) -> bytes:
    enc = StreamEncoder("gpt-4.1", request=request)
    out = b"".join(enc.event(e) for e in events)
    if error is not None:
        out += enc.error(error)
    return out + enc.end()


def _parsed(raw: bytes) -> list:
    parsed = SSEParser().feed(raw)
    for name, data in parsed:
        assert name == orjson.loads(data)["type"]  # the event: line names the payload
    return [EVENTS.validate_python(orjson.loads(data)) for _, data in parsed]


def test_stream_events_validate_and_follow_the_documented_order():
    events = _parsed(_frames(TOOL_STREAM))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    message = [e.type for e in events if getattr(e, "item_id", "").startswith("msg_")
               or getattr(getattr(e, "item", None), "type", None) == "message"]
    assert message == ["response.output_item.added", "response.content_part.added",
                       "response.output_text.delta", "response.output_text.delta",
                       "response.output_text.done", "response.content_part.done",
                       "response.output_item.done"]
    assert types.count("response.function_call_arguments.delta") == 3
    assert types.count("response.output_item.added") == types.count("response.output_item.done") == 4
    final = events[-1].response
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call", "function_call"]
    assert final.output_text == "Hello" and final.output[0].encrypted_content == "SIG"
    assert [orjson.loads(o.arguments) for o in final.output[2:]] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert final.usage.input_tokens == 8 and final.usage.output_tokens == 12
    assert all(e.response.id == "resp_s1" for e in events if hasattr(e, "response"))


def test_stream_incomplete_and_error_events():
    events = _parsed(_frames([MessageStart("r", "m"), BlockStart(0, TextBlock("")), TextDelta(0, "cut"),
                              BlockStop(0), MessageEnd("max_tokens", Usage(output_tokens=1))]))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    events = _parsed(_frames([MessageStart("r", "m"), BlockStart(0, TextBlock("")), TextDelta(0, "x")],
                             error=E.Overloaded("busy")))
    err = events[-1]
    assert err.type == "error" and err.message == "busy" and err.code == "overloaded"
    assert err.sequence_number == len(events) - 1
    # an error before anything else still opens the response, or the SDK cannot read it
    events = _parsed(_frames([], error=E.UpstreamError("boom")))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "error"]


# ---- the real openai SDK over loopback ----------------------------------------------------


class _Server:
    """Serves POST /v1/responses like the gateway would: our decode_request, then a
    scripted canonical stream (or whole response) through our encoders."""

    def __init__(self, events=None, response=None, error=None) -> None:
        self.events, self.response, self.error = events, response, error
        self.requests: list[Request] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        req = decode_request(await request.json())
        self.requests.append(req)
        if not req.stream:
            return web.json_response(encode_response(self.response, req.model, request=req))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_frames(self.events, request=req, error=self.error))
        await resp.write_eof()
        return resp

    async def __aenter__(self) -> AsyncOpenAI:
        app = web.Application()
        app.router.add_post("/v1/responses", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.client = AsyncOpenAI(api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
        await self.runner.cleanup()


async def test_sdk_stream_helper_gets_final_response():
    async with _Server(events=TOOL_STREAM) as client:
        async with client.responses.stream(model="gpt-4.1", input="weather?", tools=[WEATHER]) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
    assert deltas == ["Hel", "lo"] and final.output_text == "Hello"
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.call_id, orjson.loads(c.arguments)) for c in calls] == [
        ("call_a", {"city": "Oslo"}), ("call_b", {"city": "Rome"})]
    assert final.usage.input_tokens == 8 and final.usage.input_tokens_details.cached_tokens == 3
    assert final.usage.output_tokens_details.reasoning_tokens == 2
    assert final.tools[0].name == "get_weather"


async def test_sdk_create_stream_true_and_error_event():
    events = [MessageStart("r", "m"), BlockStart(0, TextBlock("")), TextDelta(0, "partial")]
    async with _Server(events=events, error=E.RateLimited("too many")) as client:
        stream = await client.responses.create(model="gpt-4.1", input="hi", stream=True)
        got = [e async for e in stream]
    assert got[-1].type == "error" and got[-1].message == "too many"
    assert got[-1].code == "rate_limit_exceeded"
    assert "".join(e.delta for e in got if e.type == "response.output_text.delta") == "partial"


async def test_sdk_stream_helper_without_completed_event_fails_loudly():
    events = [MessageStart("r", "m"), BlockStart(0, TextBlock("")), TextDelta(0, "x")]
    async with _Server(events=events, error=E.UpstreamError("gone")) as client:
        async with client.responses.stream(model="gpt-4.1", input="hi") as stream:
            errors = [e async for e in stream if e.type == "error"]
            with pytest.raises(RuntimeError, match="response.completed"):
                await stream.get_final_response()
    assert errors[0].message == "gone"


async def test_sdk_create_whole_response():
    resp = _resp(content=[TextBlock("Hi there")], stop_reason="end_turn")
    async with _Server(response=resp) as client:
        got = await client.responses.create(model="gpt-4.1", input="hi", instructions="x",
                                            metadata={"t": "1"})
    assert got.output_text == "Hi there" and got.status == "completed" and got.id == "resp_abc"
    assert got.usage.total_tokens == 109 and got.instructions == "x" and got.metadata == {"t": "1"}
