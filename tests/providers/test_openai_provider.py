"""OpenAIProvider against the fake OpenAI upstream over real loopback HTTP."""

from __future__ import annotations

import asyncio

import orjson
import aiohttp
import pytest
from aiohttp import web

from modelmart.core import errors as E
from modelmart.core.types import (
    BlockStart,
    MessageEnd,
    MessageStart,
    Request,
    TextBlock,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolUseBlock,
    Usage,
    Message,
)
from modelmart.providers.base import ProviderConfig
from modelmart.providers.http import new_session
from modelmart.providers.openai import OpenAIProvider
from modelmart.providers.registry import provider_class
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Reply, ToolCall, free_port

KEY = "sk-test-123"
TOOL = Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})


@pytest.fixture
def fake():
    server = FakeOpenAI(api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture
async def http():
    session = new_session()
    yield session
    await session.close()


def make(fake_or_url, http, **cfg) -> OpenAIProvider:
    base = fake_or_url if isinstance(fake_or_url, str) else f"{fake_or_url.base_url}/v1/"
    cfg.setdefault("api_key", KEY)
    return OpenAIProvider(ProviderConfig("openai", "gpt-4o-mini", base_url=base, **cfg), http)


def ask(text="hello", **kw) -> Request:
    return Request(model="alias", messages=[Message("user", [TextBlock(text)])], **kw)


async def collect(provider, req):
    return [ev async for ev in provider.stream(req)]


def test_registry_finds_the_provider():
    assert provider_class("openai") is OpenAIProvider


async def test_text_completion(fake, http):
    resp = await make(fake, http).complete(ask("hello there", max_tokens=20, temperature=0.1))
    assert resp.content == [TextBlock("echo: hello there")]
    assert resp.stop_reason == "end_turn" and resp.model == "gpt-4o-mini" and resp.id.startswith("chatcmpl-")
    assert resp.usage == Usage(input_tokens=11, output_tokens=7)
    got = fake.received[-1]
    assert got.path == "/v1/chat/completions"
    assert got.headers["Authorization"] == f"Bearer {KEY}"
    assert got.body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}],
                        "max_tokens": 20, "temperature": 0.1}


async def test_usage_with_cached_and_reasoning_tokens(fake, http):
    fake.queue(Reply(text="ok", input_tokens=100, cache_read_tokens=900, output_tokens=40, reasoning_tokens=30))
    resp = await make(fake, http).complete(ask())
    assert resp.usage == Usage(input_tokens=100, output_tokens=40, cache_read_tokens=900, reasoning_tokens=30)


@pytest.mark.parametrize("stop, expected", [("max_tokens", "max_tokens"), ("stop_sequence", "end_turn")])
async def test_stop_reasons(fake, http, stop, expected):
    fake.queue(Reply(text="cut", stop=stop))
    assert (await make(fake, http).complete(ask())).stop_reason == expected


async def test_single_tool_call(fake, http):
    fake.queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_a")]))
    resp = await make(fake, http).complete(ask(tools=[TOOL]))
    assert resp.content == [ToolUseBlock("call_a", "get_weather", {"city": "Paris"})]
    assert resp.stop_reason == "tool_use"
    assert fake.received[-1].body["tools"][0]["function"]["name"] == "get_weather"


async def test_parallel_tool_calls_with_text(fake, http):
    fake.queue(Reply(text="Checking both.", tool_calls=[
        ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Tōkyō"})]))
    resp = await make(fake, http).complete(ask(tools=[TOOL]))
    assert resp.content[0] == TextBlock("Checking both.")
    calls = resp.content[1:]
    assert [c.input for c in calls] == [{"city": "Paris"}, {"city": "Tōkyō"}]
    assert all(isinstance(c, ToolUseBlock) and c.id.startswith("call_") for c in calls)
    assert calls[0].id != calls[1].id


async def test_stream_text_with_usage(fake, http):
    fake.queue(Reply(text="The quick brown fox", chunk_size=4, input_tokens=20, output_tokens=5,
                     cache_read_tokens=8))
    events = await collect(make(fake, http), ask())
    assert isinstance(events[0], MessageStart) and events[0].model == "gpt-4o-mini"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The quick brown fox"
    assert len([e for e in events if isinstance(e, TextDelta)]) == 5
    assert events[-1] == MessageEnd("end_turn", Usage(input_tokens=20, output_tokens=5, cache_read_tokens=8))
    assert sum(isinstance(e, MessageEnd) for e in events) == 1
    body = fake.received[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("source", ["openai", "anthropic"])
async def test_stream_of_real_chunks_takes_the_fast_path_for_an_openai_client(fake, http, source):
    # The fake writes OpenAI's chunks (service_tier, refusal, usage null, random padding):
    # their texts reach an OpenAI client as the upstream's literals (TextRun), any other
    # client as plain TextDeltas.
    from modelmart.dialects.openai_chat.fastpath import TextRun

    text = 'The "quick" brown fox\\ jumps — over'
    fake.queue(Reply(text=text, chunk_size=3))
    batches = [b async for b in make(fake, http).stream_batches(ask(source=source))]
    events = [e for b in batches for e in b]
    runs = [e for e in events if type(e) is TextRun]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == text
    if source == "openai":
        assert sum(len(r.literals) for r in runs) == len(range(0, len(text), 3))
        assert [orjson.loads(lit) for r in runs for lit in r.literals] == [
            text[i:i + 3] for i in range(0, len(text), 3)]
    else:
        assert runs == []


@pytest.mark.parametrize("text", [None, "Let me check."])
async def test_stream_parallel_tool_calls_reassemble(fake, http, text):
    args = {"city": "Reykjavík", "days": [1, 2, 3], "note": "quote \" and {brace}"}
    fake.queue(Reply(text=text, chunk_size=2, tool_calls=[
        ToolCall("get_weather", args, id="call_1"), ToolCall("get_weather", {"city": "Oslo"}, id="call_2")]))
    events = await collect(make(fake, http), ask(tools=[TOOL]))
    starts = [e for e in events if isinstance(e, BlockStart) and isinstance(e.block, ToolUseBlock)]
    assert [(s.block.id, s.block.name) for s in starts] == [("call_1", "get_weather"), ("call_2", "get_weather")]
    joined = ["".join(e.partial_json for e in events if isinstance(e, ToolArgsDelta) and e.index == s.index)
              for s in starts]
    assert [orjson.loads(j) for j in joined] == [args, {"city": "Oslo"}]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (text or "")
    assert events[-1].stop_reason == "tool_use"


@pytest.mark.parametrize("status, cls", [
    (400, E.InvalidRequest), (401, E.AuthenticationFailed), (403, E.PermissionDenied),
    (404, E.NotFound), (413, E.RequestTooLarge), (429, E.RateLimited), (500, E.UpstreamError),
    (503, E.Overloaded), (529, E.Overloaded)])
@pytest.mark.parametrize("streaming", [False, True])
async def test_error_statuses_keep_their_status(fake, http, status, cls, streaming):
    fake.queue(Reply(error_status=status, error_message="upstream said no", retry_after=7))
    provider = make(fake, http)
    with pytest.raises(cls) as info:
        await (collect(provider, ask()) if streaming else provider.complete(ask()))
    assert info.value.status == status and info.value.message == "upstream said no"
    assert info.value.retry_after == 7


async def test_wrong_key_is_authentication_failed(fake, http):
    with pytest.raises(E.AuthenticationFailed) as info:
        await make(fake, http, api_key="sk-wrong").complete(ask())
    assert info.value.status == 401 and "Incorrect API key" in info.value.message


async def test_truncated_stream_is_upstream_error(fake, http):
    fake.queue(Reply(text="this stream will be cut short", chunk_size=2, truncate_after=4))
    events = []
    with pytest.raises(E.UpstreamError, match="ended before it finished"):
        async for ev in make(fake, http).stream(ask()):
            events.append(ev)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "this s"


async def test_connection_refused_is_upstream_error(http):
    provider = make(f"http://127.0.0.1:{free_port()}/v1", http)
    with pytest.raises(E.UpstreamError) as info:
        await provider.complete(ask())
    assert info.value.status == 502 and "connect" in info.value.message
    with pytest.raises(E.UpstreamError):
        await collect(provider, ask())


class _Raw:
    """A loopback server answering every POST with a fixed body (for malformed replies)."""

    def __init__(self, body: bytes, content_type: str = "application/json") -> None:
        self.body, self.content_type = body, content_type

    async def __aenter__(self) -> str:
        async def handler(request):
            return web.Response(body=self.body, content_type=self.content_type)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


@pytest.mark.parametrize("raw, fragment", [
    (b"<html>oops</html>", "not JSON"),
    (b'{"object": "list", "data": []}', "not a chat completion"),
    (b'{"error": {"message": "quota gone"}}', "quota gone"),
])
async def test_malformed_reply_is_upstream_error(http, raw, fragment):
    async with _Raw(raw) as url:
        with pytest.raises(E.UpstreamError) as info:
            await make(url, http).complete(ask())
    assert info.value.status == 502 and fragment in info.value.message


async def test_garbage_stream_is_upstream_error(http):
    async with _Raw(b"data: {broken\n\n", "text/event-stream") as url:
        with pytest.raises(E.UpstreamError, match="not JSON"):
            await collect(make(url, http), ask())


async def test_unsupported_params_are_dropped(http):
    server = FakeOpenAI(api_key=KEY, unsupported_params=("max_tokens", "temperature", "stream_options")).start()
    try:
        provider = make(server, http, unsupported_params=["max_tokens", "temperature", "stream_options"])
        resp = await provider.complete(ask(max_tokens=30, temperature=0.5, top_p=0.5))
        assert resp.content == [TextBlock("echo: hello")]
        body = server.received[-1].body
        assert body["max_completion_tokens"] == 30 and body["top_p"] == 0.5
        assert "max_tokens" not in body and "temperature" not in body
        events = await collect(provider, ask(max_tokens=30))
        assert events[-1].stop_reason == "end_turn"
        assert "stream_options" not in server.received[-1].body
        # without the drop list the same upstream refuses the request, as OpenAI's o-series do
        with pytest.raises(E.InvalidRequest) as info:
            await make(server, http).complete(ask(max_tokens=30))
        assert info.value.param == "max_tokens"
    finally:
        server.stop()


@pytest.mark.parametrize("style, header, value", [
    ("bearer", "Authorization", f"Bearer {KEY}"),
    ("api-key", "api-key", KEY),
    ("x-api-key", "x-api-key", KEY),
    ("X-Custom-Token", "X-Custom-Token", KEY),
])
async def test_custom_auth_header_styles(http, style, header, value):
    server = FakeOpenAI().start()  # no auth check: we look at what arrived
    try:
        await make(server, http, auth_header=style, headers={"OpenAI-Organization": "org-1"}).complete(ask())
        got = {k.lower(): v for k, v in server.received[-1].headers.items()}  # case-insensitive
        assert got[header.lower()] == value and got["openai-organization"] == "org-1"
        if style != "bearer":
            assert "authorization" not in got
    finally:
        server.stop()


async def test_closing_the_stream_early_disconnects_upstream(fake, http):
    fake.queue(Reply(text="slow " * 200, chunk_size=5, event_delay=0.02))
    agen = make(fake, http).stream(ask())
    async for ev in agen:
        if isinstance(ev, TextDelta):
            break
    await agen.aclose()
    assert await asyncio.to_thread(fake.client_disconnected.wait, 2.0)


async def test_fake_validates_like_openai(fake, http):
    async with aiohttp.request("POST", f"{fake.base_url}/v1/chat/completions", json={"model": "m"},
                         headers={"Authorization": f"Bearer {KEY}"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "messages"
    async with aiohttp.request("POST", f"{fake.base_url}/v1/chat/completions", json={"model": "m", "messages": []}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with aiohttp.request("GET", f"{fake.base_url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}) as resp:
        data = await resp.json()
        assert data["object"] == "list" and "gpt-4o-mini" in [m["id"] for m in data["data"]]
