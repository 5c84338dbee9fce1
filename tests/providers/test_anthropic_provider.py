"""AnthropicProvider against FakeAnthropic over loopback."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelmart.core.errors import (
    AuthenticationFailed, InvalidRequest, NotFound, Overloaded, PermissionDenied, RateLimited,
    RequestTooLarge, UpstreamError,
)
from modelmart.core.types import (
    BlockStart, BlockStop, Message, MessageEnd, MessageStart, Request, ResponseFormat, TextBlock,
    TextDelta, ToolArgsDelta, ToolUseBlock, Usage,
)
from modelmart.providers.anthropic import AnthropicProvider
from modelmart.providers.base import ProviderConfig
from modelmart.providers.http import new_session
from modelmart.providers.registry import provider_class
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.script import Reply, ToolCall, free_port

KEY = "sk-ant-test"


@pytest.fixture(scope="module")
def server():
    fake = FakeAnthropic(api_key=KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.replies.clear()
    server.received.clear()
    server.client_disconnected.clear()
    return server


@pytest.fixture
async def session():
    http = new_session()
    yield http
    await http.close()


def make_provider(session, base_url: str, **config) -> AnthropicProvider:
    config.setdefault("api_key", KEY)
    return AnthropicProvider(ProviderConfig(kind="anthropic", model="claude-up",
                                            base_url=base_url, **config), session)


@pytest.fixture
def provider(fake, session):
    return make_provider(session, fake.base_url + "/")


def ask(text: str = "hi", **fields) -> Request:
    return Request(model="alias", messages=[Message("user", [TextBlock(text)])], **fields)


async def collect(provider, req) -> list:
    return [ev async for ev in provider.stream(req)]


def test_registry_finds_the_provider():
    assert provider_class("anthropic") is AnthropicProvider
    assert AnthropicProvider.kind == "anthropic"


def test_default_base_url(session):
    assert make_provider(session, "").url == "https://api.anthropic.com/v1/messages"


async def test_text_completion_and_what_was_sent(fake, provider):
    resp = await provider.complete(ask("hello", system="sys"))
    assert resp.content == [TextBlock("echo: hello")]
    assert resp.stop_reason == "end_turn" and resp.model == "claude-up"
    assert resp.usage == Usage(input_tokens=11, output_tokens=7)
    sent = fake.received[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["Content-Type"] == "application/json"
    assert "authorization" not in {k.lower() for k in sent.headers}
    assert sent.body == {"model": "claude-up", "max_tokens": 4096, "system": "sys",
                         "messages": [{"role": "user",
                                       "content": [{"type": "text", "text": "hello"}]}]}


async def test_config_headers_are_added(fake, session):
    provider = make_provider(session, fake.base_url, headers={"anthropic-beta": "b1"})
    await provider.complete(ask())
    assert fake.received[-1].headers["anthropic-beta"] == "b1"


async def test_single_tool_call(fake, provider):
    fake.queue(Reply(text="Let me check.", tool_calls=[ToolCall("weather", {"city": "Oslo"},
                                                                id="toolu_1")]))
    resp = await provider.complete(ask())
    assert resp.content == [TextBlock("Let me check."),
                            ToolUseBlock("toolu_1", "weather", {"city": "Oslo"})]
    assert resp.stop_reason == "tool_use"


async def test_parallel_tool_calls(fake, provider):
    fake.queue(Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}),
                                 ToolCall("clock", {"tz": "UTC", "nested": {"a": [1, 2]}})]))
    resp = await provider.complete(ask())
    assert [(b.name, b.input) for b in resp.content] == [
        ("weather", {"city": "Oslo"}), ("clock", {"tz": "UTC", "nested": {"a": [1, 2]}})]
    assert all(b.id.startswith("toolu_") for b in resp.content)


async def test_usage_with_cache_read_and_write(fake, provider):
    fake.queue(Reply(text="x", input_tokens=5, output_tokens=9, cache_read_tokens=1000,
                     cache_write_tokens=200, reasoning_tokens=4, stop="max_tokens"))
    resp = await provider.complete(ask())
    assert resp.usage == Usage(input_tokens=5, output_tokens=9, cache_read_tokens=1000,
                               cache_write_tokens=200, reasoning_tokens=4)
    assert resp.usage.total_input_tokens == 1205
    assert resp.stop_reason == "max_tokens"


async def test_streaming_text(fake, provider):
    fake.queue(Reply(text="Hello there", chunk_size=4))
    events = await collect(provider, ask())
    assert fake.received[-1].body["stream"] is True
    assert isinstance(events[0], MessageStart) and events[0].model == "claude-up"
    assert events[1] == BlockStart(0, TextBlock(""))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hell", "o th", "ere"]
    assert events[-2:] == [BlockStop(0), MessageEnd("end_turn", Usage(input_tokens=11,
                                                                      output_tokens=7))]


async def test_streaming_parallel_tool_calls_reassemble(fake, provider):
    args = {"city": "Oslo", "days": [1, 2, 3], "unit": "celsius"}
    fake.queue(Reply(tool_calls=[ToolCall("weather", args, id="toolu_a"),
                                 ToolCall("clock", {"tz": "UTC"}, id="toolu_b")], chunk_size=5))
    events = await collect(provider, ask())
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [(s.index, s.block.id, s.block.name) for s in starts] == [
        (0, "toolu_a", "weather"), (1, "toolu_b", "clock")]
    parts = {0: "", 1: ""}
    for e in events:
        if isinstance(e, ToolArgsDelta):
            parts[e.index] += e.partial_json
    assert json.loads(parts[0]) == args and json.loads(parts[1]) == {"tz": "UTC"}
    assert sum(isinstance(e, ToolArgsDelta) and e.index == 0 for e in events) > 3
    assert events[-1].stop_reason == "tool_use"


async def test_streaming_usage_combines_start_and_delta(fake, provider):
    fake.queue(Reply(text="x", input_tokens=30, output_tokens=12, cache_read_tokens=500,
                     cache_write_tokens=70))
    events = await collect(provider, ask())
    assert events[0].usage.output_tokens == 1  # what message_start reports
    assert events[-1].usage == Usage(input_tokens=30, output_tokens=12, cache_read_tokens=500,
                                     cache_write_tokens=70)


ERROR_CASES = [
    (400, InvalidRequest), (401, AuthenticationFailed), (403, PermissionDenied),
    (404, NotFound), (413, RequestTooLarge), (429, RateLimited), (500, UpstreamError),
    (529, Overloaded),
]


@pytest.mark.parametrize("status,cls", ERROR_CASES)
async def test_error_statuses_keep_the_upstream_status(fake, provider, status, cls):
    fake.queue(Reply(error_status=status, error_message=f"failed with {status}"))
    with pytest.raises(cls) as info:
        await provider.complete(ask())
    assert info.value.status == status and info.value.message == f"failed with {status}"


@pytest.mark.parametrize("status,cls", ERROR_CASES)
async def test_error_statuses_when_streaming(fake, provider, status, cls):
    fake.queue(Reply(error_status=status, error_message="nope"))
    with pytest.raises(cls) as info:
        await collect(provider, ask())
    assert info.value.status == status


async def test_rate_limit_carries_retry_after(fake, provider):
    fake.queue(Reply(error_status=429, error_message="slow down", retry_after=7))
    with pytest.raises(RateLimited) as info:
        await provider.complete(ask())
    assert info.value.retry_after == 7.0


async def test_wrong_api_key(fake, session):
    with pytest.raises(AuthenticationFailed) as info:
        await make_provider(session, fake.base_url, api_key="wrong").complete(ask())
    assert info.value.status == 401


async def test_extra_fields_never_override_canonical_ones(fake, provider):
    req = ask(temperature=0.5)
    req.extra["temperature"] = 3
    await provider.complete(req)
    assert fake.received[-1].body["temperature"] == 0.5


@pytest.mark.parametrize("headers,body,status,fragment", [
    ({"x-api-key": KEY}, {"model": "m", "max_tokens": 5, "messages": []}, 400, "anthropic-version"),
    ({"x-api-key": KEY, "anthropic-version": "2023-06-01"},
     {"model": "m", "messages": [{"role": "user", "content": "x"}]}, 400, "max_tokens"),
    ({"anthropic-version": "2023-06-01"},
     {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 401,
     "x-api-key"),
])
async def test_fake_refuses_what_the_real_api_refuses(fake, session, headers, body, status,
                                                      fragment):
    async with aiohttp.request("POST", fake.base_url + "/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    assert error["type"] == kind and fragment in error["message"]


async def test_truncated_stream_is_an_upstream_error(fake, provider):
    fake.queue(Reply(text="a long answer", truncate_after=5))
    with pytest.raises(UpstreamError, match="ended before it finished") as info:
        await collect(provider, ask())
    assert info.value.status == 502


async def test_stream_missing_only_message_stop_still_finishes(fake, provider):
    # message_start, ping, block start, delta, block stop, message_delta: no message_stop
    fake.queue(Reply(text="abc", chunk_size=10, truncate_after=6))
    events = await collect(provider, ask())
    assert events[-1] == MessageEnd("end_turn", Usage(input_tokens=11, output_tokens=7))


async def test_client_leaving_a_stream_closes_the_upstream(fake, provider):
    fake.queue(Reply(text="x" * 400, chunk_size=1, event_delay=0.01))
    stream = provider.stream(ask())
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    disconnected = await asyncio.to_thread(fake.client_disconnected.wait, 5)
    assert disconnected


async def test_connection_refused(session):
    provider = make_provider(session, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamError, match="connection failed") as info:
        await provider.complete(ask())
    assert info.value.status == 502
    with pytest.raises(UpstreamError, match="connection failed"):
        await collect(provider, ask())


async def test_response_format_refused_before_calling_upstream(fake, session):
    provider = make_provider(session, fake.base_url, supports_json_schema=False)
    with pytest.raises(InvalidRequest, match="not supported by this deployment"):
        await provider.complete(ask(response_format=ResponseFormat("json_object")))
    assert fake.received == []


async def test_response_format_sent_as_structured_output(fake, provider):
    await provider.complete(ask(response_format=ResponseFormat("json_schema", {"type": "object"})))
    assert fake.received[-1].body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}}


# ---- an upstream that answers badly -----------------------------------------------------


async def serve(status: int, body: bytes, content_type: str):
    async def handler(request):
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.mark.parametrize("body,fragment", [
    (b"{this is not json", "not JSON"),
    (b'{"type": "message", "content": "oops"}', "content is not an array"),
    (b'["a list"]', "type 'message'"),
])
async def test_malformed_json_reply(session, body, fragment):
    server = await serve(200, body, "application/json")
    try:
        with pytest.raises(UpstreamError, match=fragment) as info:
            await make_provider(session, str(server.make_url(""))).complete(ask())
        assert info.value.status == 502
    finally:
        await server.close()


async def test_malformed_stream_reply(session):
    server = await serve(200, b"event: message_start\ndata: {broken\n\n", "text/event-stream")
    try:
        with pytest.raises(UpstreamError, match="not JSON"):
            await collect(make_provider(session, str(server.make_url(""))), ask())
    finally:
        await server.close()


async def test_error_page_that_is_not_json(session):
    server = await serve(503, b"<html>Service Unavailable</html>", "text/html")
    try:
        with pytest.raises(Overloaded) as info:
            await make_provider(session, str(server.make_url(""))).complete(ask())
        assert info.value.status == 503 and "Service Unavailable" in info.value.message
    finally:
        await server.close()
