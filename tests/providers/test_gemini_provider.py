"""GeminiProvider against the fake Gemini upstream over real loopback HTTP."""

from __future__ import annotations

import asyncio

import orjson
import aiohttp
import pytest

from modelmart.core import errors as E
from modelmart.core.types import (
    BlockStart, Message, MessageEnd, MessageStart, Request, ResponseFormat, TextBlock,
    TextDelta, ThinkingBlock, ThinkingDelta, Tool, ToolArgsDelta, ToolChoice, ToolResultBlock,
    ToolUseBlock, Usage,
)
from modelmart.providers.base import ProviderConfig
from modelmart.providers.gemini import GeminiProvider
from modelmart.providers.http import new_session
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.script import Reply, ToolCall, free_port

KEY = "AIza-test-123"
TOOL = Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}},
                                       "additionalProperties": False})


@pytest.fixture
def fake():
    server = FakeGemini(api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture
async def http():
    session = new_session()
    yield session
    await session.close()


def make(fake_or_url, http, **cfg) -> GeminiProvider:
    base = fake_or_url if isinstance(fake_or_url, str) else fake_or_url.base_url
    cfg.setdefault("api_key", KEY)
    return GeminiProvider(ProviderConfig("gemini", "gemini-2.5-flash", base_url=base, **cfg), http)


def ask(text="hello", **kw) -> Request:
    return Request(model="alias", messages=[Message("user", [TextBlock(text)])], **kw)


async def collect(provider, req):
    return [ev async for ev in provider.stream(req)]


async def test_text_completion(fake, http):
    resp = await make(fake, http).complete(ask("hello there", max_tokens=20, temperature=0.1,
                                               system="be brief", stop=["END"], top_k=5))
    assert resp.content == [TextBlock("echo: hello there")]
    assert resp.stop_reason == "end_turn" and resp.model == "gemini-2.5-flash" and resp.id
    assert resp.usage == Usage(input_tokens=11, output_tokens=7)
    got = fake.received[-1]
    assert got.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert got.headers["x-goog-api-key"] == KEY and "Authorization" not in got.headers
    assert got.body == {
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"temperature": 0.1, "topK": 5, "maxOutputTokens": 20,
                             "stopSequences": ["END"]},
    }


async def test_usage_with_cached_and_thought_tokens(fake, http):
    fake.queue(Reply(text="ok", input_tokens=100, cache_read_tokens=900, output_tokens=40,
                     reasoning_tokens=30))
    resp = await make(fake, http).complete(ask())
    # prompt 1000 includes the 900 cached; output = 10 candidates + 30 thoughts
    assert resp.usage == Usage(input_tokens=100, output_tokens=40, cache_read_tokens=900,
                               reasoning_tokens=30)


@pytest.mark.parametrize("stop, expected", [("max_tokens", "max_tokens"),
                                            ("content_filter", "content_filter")])
async def test_stop_reasons(fake, http, stop, expected):
    fake.queue(Reply(text="cut", stop=stop))
    assert (await make(fake, http).complete(ask())).stop_reason == expected


async def test_single_tool_call_and_json_schema_format(fake, http):
    fake.queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    fmt = ResponseFormat("json_schema", schema={"type": "object"}, name="x")
    resp = await make(fake, http).complete(ask(tools=[TOOL], tool_choice=ToolChoice("tool", "get_weather"),
                                               response_format=fmt))
    [call] = resp.content
    assert isinstance(call, ToolUseBlock) and call.name == "get_weather" and call.input == {"city": "Paris"}
    assert call.id.startswith("call_")
    assert resp.stop_reason == "tool_use"
    body = fake.received[-1].body
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather", "parametersJsonSchema": TOOL.input_schema}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY",
                                                            "allowedFunctionNames": ["get_weather"]}}
    assert body["generationConfig"] == {"responseMimeType": "application/json",
                                        "responseJsonSchema": {"type": "object"}}


async def test_parallel_tool_calls_then_results_round_trip(fake, http):
    fake.queue(Reply(text="Checking both.", reasoning_tokens=5, tool_calls=[
        ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Tōkyō"})]))
    provider = make(fake, http)
    first = await provider.complete(ask(tools=[TOOL]))
    calls = [b for b in first.content if isinstance(b, ToolUseBlock)]
    assert first.content[0] == TextBlock("Checking both.")
    assert [c.input for c in calls] == [{"city": "Paris"}, {"city": "Tōkyō"}]
    assert calls[0].id != calls[1].id
    # the thinking model's signature rides in a text-less thinking block before the call
    assert ThinkingBlock("", signature=fake.signatures[-1]) in first.content
    follow = Request(model="alias", tools=[TOOL], messages=[
        Message("user", [TextBlock("weather?")]),
        Message("assistant", first.content),
        Message("user", [ToolResultBlock(calls[0].id, [TextBlock("sunny")]),
                         ToolResultBlock(calls[1].id, [TextBlock("down")], is_error=True)]),
    ])
    resp = await provider.complete(follow)
    assert resp.content == [TextBlock("echo: ")]  # the last user turn has no text
    model_turn, results = fake.received[-1].body["contents"][1:]
    assert model_turn["parts"][1] == {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                      "thoughtSignature": fake.signatures[-1]}
    assert "id" not in model_turn["parts"][2]["functionCall"]  # synthetic ids stay ours
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
        {"functionResponse": {"name": "get_weather", "response": {"error": "down"}}}]}


async def test_gemini_call_ids_are_kept_and_sent_back(fake, http):
    fake.queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="g-1")]))
    provider = make(fake, http)
    first = await provider.complete(ask(tools=[TOOL]))
    assert first.content == [ToolUseBlock("g-1", "get_weather", {"city": "Oslo"})]
    await provider.complete(Request(model="a", tools=[TOOL], messages=[
        Message("user", [TextBlock("q")]), Message("assistant", first.content),
        Message("user", [ToolResultBlock("g-1", [TextBlock("cold")])])]))
    contents = fake.received[-1].body["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "g-1"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "g-1"


async def test_stream_text_with_usage(fake, http):
    fake.queue(Reply(text="The quick brown fox", chunk_size=4, input_tokens=20, output_tokens=5,
                     cache_read_tokens=8, reasoning_tokens=2))
    events = await collect(make(fake, http), ask())
    assert isinstance(events[0], MessageStart) and events[0].model == "gemini-2.5-flash"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The quick brown fox"
    assert len([e for e in events if isinstance(e, TextDelta)]) == 5
    assert events[-1] == MessageEnd("end_turn", Usage(input_tokens=20, output_tokens=5,
                                                      cache_read_tokens=8, reasoning_tokens=2))
    assert sum(isinstance(e, MessageEnd) for e in events) == 1
    assert fake.received[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


@pytest.mark.parametrize("text", [None, "Let me check."])
async def test_stream_parallel_tool_calls(fake, http, text):
    args = {"city": "Reykjavík", "days": [1, 2, 3], "note": "quote \" and {brace}"}
    fake.queue(Reply(text=text, chunk_size=2, tool_calls=[
        ToolCall("get_weather", args), ToolCall("get_weather", {"city": "Oslo"})]))
    events = await collect(make(fake, http), ask(tools=[TOOL]))
    starts = [e for e in events if isinstance(e, BlockStart) and isinstance(e.block, ToolUseBlock)]
    assert [s.block.name for s in starts] == ["get_weather", "get_weather"]
    assert starts[0].block.id != starts[1].block.id
    joined = [[e.partial_json for e in events if isinstance(e, ToolArgsDelta) and e.index == s.index]
              for s in starts]
    assert [len(j) for j in joined] == [1, 1]  # a Gemini call arrives whole
    assert [orjson.loads(j[0]) for j in joined] == [args, {"city": "Oslo"}]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (text or "")
    assert events[-1].stop_reason == "tool_use"


async def test_stream_keeps_the_call_signature(fake, http):
    fake.queue(Reply(reasoning_tokens=3, tool_calls=[ToolCall("get_weather", {"city": "Rome"})]))
    events = await collect(make(fake, http), ask(tools=[TOOL]))
    sigs = [e.signature for e in events if isinstance(e, ThinkingDelta) and e.signature]
    assert sigs == [fake.signatures[-1]]


@pytest.mark.parametrize("status, cls, name", [
    (400, E.InvalidRequest, "INVALID_ARGUMENT"), (401, E.AuthenticationFailed, "UNAUTHENTICATED"),
    (403, E.PermissionDenied, "PERMISSION_DENIED"), (404, E.NotFound, "NOT_FOUND"),
    (429, E.RateLimited, "RESOURCE_EXHAUSTED"), (500, E.UpstreamError, "INTERNAL"),
    (503, E.Overloaded, "UNAVAILABLE"), (504, E.UpstreamTimeout, "DEADLINE_EXCEEDED")])
@pytest.mark.parametrize("streaming", [False, True])
async def test_error_statuses_keep_their_status(fake, http, status, cls, name, streaming):
    fake.queue(Reply(error_status=status, error_message="upstream said no", retry_after=7))
    provider = make(fake, http)
    with pytest.raises(cls) as info:
        await (collect(provider, ask()) if streaming else provider.complete(ask()))
    assert info.value.status == status and info.value.message == "upstream said no"
    assert info.value.retry_after == 7  # from the google.rpc.RetryInfo detail


async def test_wrong_key_is_authentication_failed_with_googles_400(fake, http):
    with pytest.raises(E.AuthenticationFailed) as info:
        await make(fake, http, api_key="AIza-wrong").complete(ask())
    assert info.value.status == 400 and "API key not valid" in info.value.message


async def test_missing_key_is_permission_denied(fake, http):
    with pytest.raises(E.PermissionDenied) as info:
        await make(fake, http, api_key=None).complete(ask())
    assert info.value.status == 403


async def test_truncated_stream_is_upstream_error(fake, http):
    fake.queue(Reply(text="this stream will be cut short", chunk_size=2, truncate_after=3))
    events = []
    with pytest.raises(E.UpstreamError, match="ended before it finished"):
        async for ev in make(fake, http).stream(ask()):
            events.append(ev)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "this s"


async def test_connection_refused_is_upstream_error(http):
    provider = make(f"http://127.0.0.1:{free_port()}", http)
    with pytest.raises(E.UpstreamError) as info:
        await provider.complete(ask())
    assert info.value.status == 502
    with pytest.raises(E.UpstreamError):
        await collect(provider, ask())


async def test_closing_the_stream_early_disconnects_upstream(fake, http):
    fake.queue(Reply(text="slow " * 200, chunk_size=5, event_delay=0.02))
    agen = make(fake, http).stream(ask())
    async for ev in agen:
        if isinstance(ev, TextDelta):
            break
    await agen.aclose()
    assert await asyncio.to_thread(fake.client_disconnected.wait, 2.0)


async def test_unsupported_params_are_dropped(fake, http):
    await make(fake, http, unsupported_params=["seed", "topK"]).complete(ask(seed=1, top_k=3, top_p=0.5))
    assert fake.received[-1].body["generationConfig"] == {"topP": 0.5}


async def test_fake_refuses_unknown_fields_like_google(fake, http):
    url = f"{fake.base_url}/v1beta/models/m:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "max_tokens": 5}
    async with aiohttp.request("POST", url, json=body, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 400
        err = (await resp.json())["error"]
        assert err["status"] == "INVALID_ARGUMENT" and 'Unknown name "max_tokens"' in err["message"]
    snake = {"contents": [{"parts": [{"inline_data": {"mime_type": "image/png", "data": "AA=="}}]}],
             "generation_config": {"max_output_tokens": 5}}
    async with aiohttp.request("POST", url + "?key=" + KEY, json=snake) as resp:
        assert resp.status == 200
