"""BedrockProvider against FakeBedrock over loopback. The fake recomputes every SigV4
signature with botocore, so a passing call is a correctly signed call."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelmart.core.errors import (
    AuthenticationFailed, InvalidRequest, NotFound, Overloaded, PermissionDenied, RateLimited,
    UpstreamError, UpstreamTimeout,
)
from modelmart.core.types import (
    BlockStart, BlockStop, Message, MessageEnd, MessageStart, Request, ResponseFormat, TextBlock,
    TextDelta, Tool, ToolArgsDelta, ToolUseBlock, Usage,
)
from modelmart.dialects.eventstream import event_message
from modelmart.providers.base import ProviderConfig
from modelmart.providers.bedrock import BedrockProvider
from modelmart.providers.http import new_session
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.script import Reply, ToolCall, free_port

AKID, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-3"
PROFILE = "us.amazon.nova-lite-v1:0"
KEYS = {"aws_access_key_id": AKID, "aws_secret_access_key": SECRET, "region": REGION}


@pytest.fixture(scope="module")
def server():
    fake = FakeBedrock(AKID, SECRET, REGION, api_key="bedrock-api-key-test").start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.replies.clear()
    server.received.clear()
    server.client_disconnected.clear()
    server.partial_frame_bytes = 0
    server.stream_exception = None
    return server


@pytest.fixture
async def session():
    http = new_session()
    yield http
    await http.close()


def make_provider(session, base_url: str, model: str = PROFILE, options=None,
                  **config) -> BedrockProvider:
    return BedrockProvider(ProviderConfig(kind="bedrock", model=model, base_url=base_url,
                                          options=dict(KEYS if options is None else options),
                                          **config), session)


@pytest.fixture
def provider(fake, session):
    return make_provider(session, fake.base_url + "/")


def ask(text: str = "hi", **fields) -> Request:
    return Request(model="alias", messages=[Message("user", [TextBlock(text)])], **fields)


async def collect(provider, req) -> list:
    return [ev async for ev in provider.stream(req)]


def test_kind_and_default_endpoint(session):
    provider = make_provider(session, "", options={"region": "ap-south-1"})
    assert BedrockProvider.kind == "bedrock"
    assert provider.url(stream=False) == ("https://bedrock-runtime.ap-south-1.amazonaws.com"
                                          "/model/us.amazon.nova-lite-v1%3A0/converse")
    assert make_provider(session, "", options={}).url(stream=True) == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-lite-v1%3A0/"
        "converse-stream")


def test_half_configured_keys_are_refused(session):
    with pytest.raises(ValueError, match="both aws_access_key_id and aws_secret_access_key"):
        make_provider(session, "", options={"aws_access_key_id": AKID})


async def test_text_completion_signed_and_sent(fake, provider):
    resp = await provider.complete(ask("hello", system="sys", max_tokens=50))
    assert resp.content == [TextBlock("echo: hello")]
    assert resp.model == PROFILE and resp.stop_reason == "end_turn"
    assert resp.usage == Usage(input_tokens=11, output_tokens=7)
    sent = fake.received[-1]
    assert sent.path == "/model/us.amazon.nova-lite-v1%3A0/converse"
    auth = sent.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert f"/{REGION}/bedrock/aws4_request, SignedHeaders=" in auth
    assert "x-amz-date" in auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.body == {"modelId": PROFILE, "system": [{"text": "sys"}],
                         "inferenceConfig": {"maxTokens": 50},
                         "messages": [{"role": "user", "content": [{"text": "hello"}]}]}


async def test_wrong_secret_is_refused_by_the_upstream(fake, session):
    provider = make_provider(session, fake.base_url, options={**KEYS,
                                                              "aws_secret_access_key": "wrong"})
    with pytest.raises(PermissionDenied, match="signature we calculated does not match") as info:
        await provider.complete(ask())
    assert info.value.status == 403
    with pytest.raises(PermissionDenied):
        await collect(provider, ask())


async def test_unknown_key_and_wrong_region(fake, session):
    provider = make_provider(session, fake.base_url, options={**KEYS, "aws_access_key_id": "AK2"})
    with pytest.raises(PermissionDenied, match="security token included in the request"):
        await provider.complete(ask())
    provider = make_provider(session, fake.base_url, options={**KEYS, "region": "us-west-2"})
    with pytest.raises(PermissionDenied, match="scoped to a valid region"):
        await provider.complete(ask())


async def test_session_token_is_sent_and_signed(fake, session):
    provider = make_provider(session, fake.base_url,
                             options={**KEYS, "aws_session_token": "tok/en+1"})
    await provider.complete(ask())
    headers = fake.received[-1].headers
    assert headers["x-amz-security-token"] == "tok/en+1"
    assert "x-amz-security-token" in headers["Authorization"]


async def test_config_headers_are_sent_and_signed(fake, session):
    provider = make_provider(session, fake.base_url, headers={"x-team": "search"})
    await provider.complete(ask())
    headers = fake.received[-1].headers
    assert headers["x-team"] == "search" and "x-team" in headers["Authorization"]


async def test_bedrock_api_key_as_bearer(fake, session):
    provider = make_provider(session, fake.base_url, options={"region": REGION},
                             api_key="bedrock-api-key-test")
    resp = await provider.complete(ask("k"))
    assert resp.content == [TextBlock("echo: k")]
    assert fake.received[-1].headers["Authorization"] == "Bearer bedrock-api-key-test"
    provider = make_provider(session, fake.base_url, options={}, api_key="wrong")
    with pytest.raises(PermissionDenied, match="Invalid API Key"):
        await provider.complete(ask())


@pytest.fixture
def isolated_aws_env(monkeypatch, tmp_path):
    """botocore's default chain sees only what a test puts in the environment."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


async def test_default_credential_chain(fake, session, isolated_aws_env):
    isolated_aws_env.setenv("AWS_ACCESS_KEY_ID", AKID)
    isolated_aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    provider = make_provider(session, fake.base_url, options={"region": REGION})
    assert (await provider.complete(ask("chain"))).content == [TextBlock("echo: chain")]


async def test_no_credentials_anywhere(fake, session, isolated_aws_env):
    provider = make_provider(session, fake.base_url, options={"region": REGION})
    with pytest.raises(AuthenticationFailed, match="no AWS credentials"):
        await provider.complete(ask())
    assert fake.received == []


@pytest.mark.parametrize("model,path", [
    ("anthropic.claude-3-haiku-20240307-v1:0",
     "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
    ("arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-v1:0",
     "/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012%3Ainference-profile"
     "%2Feu.anthropic.claude-v1%3A0/converse"),
])
async def test_model_ids_pass_through_as_one_signed_path_segment(fake, session, model, path):
    await make_provider(session, fake.base_url, model=model).complete(ask())
    sent = fake.received[-1]
    assert sent.path == path and unquote(path.split("/")[2]) == model
    assert sent.body["modelId"] == model


async def test_single_tool_call(fake, provider):
    fake.queue(Reply(text="Let me check.",
                     tool_calls=[ToolCall("weather", {"city": "Oslo"}, id="tooluse_1")]))
    resp = await provider.complete(ask())
    assert resp.content == [TextBlock("Let me check."),
                            ToolUseBlock("tooluse_1", "weather", {"city": "Oslo"})]
    assert resp.stop_reason == "tool_use"


async def test_parallel_tool_calls(fake, provider):
    fake.queue(Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}),
                                 ToolCall("clock", {"tz": "UTC", "nested": {"a": [1, 2]}})]))
    resp = await provider.complete(ask())
    assert [(b.name, b.input) for b in resp.content] == [
        ("weather", {"city": "Oslo"}), ("clock", {"tz": "UTC", "nested": {"a": [1, 2]}})]
    assert all(b.id.startswith("tooluse_") for b in resp.content)


async def test_tools_and_sampling_are_sent(fake, session):
    provider = make_provider(session, fake.base_url, model="anthropic.claude-v2",
                             unsupported_params=["topP"])
    req = ask(temperature=0.2, top_p=0.5, top_k=9, stop=["END"])
    req.tools = [Tool("f", "does f", {"type": "object"})]
    await provider.complete(req)
    body = fake.received[-1].body
    assert body["inferenceConfig"] == {"temperature": 0.2, "stopSequences": ["END"]}
    assert body["additionalModelRequestFields"] == {"top_k": 9}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "f"


async def test_usage_with_cache_tokens(fake, provider):
    fake.queue(Reply(text="x", input_tokens=5, output_tokens=9, cache_read_tokens=1000,
                     cache_write_tokens=200, stop="max_tokens"))
    resp = await provider.complete(ask())
    assert resp.usage == Usage(input_tokens=5, output_tokens=9, cache_read_tokens=1000,
                               cache_write_tokens=200)
    assert resp.usage.total_input_tokens == 1205
    assert resp.stop_reason == "max_tokens"


async def test_stop_sequence_when_asked_for(fake, provider):
    fake.queue(Reply(text="x", stop="stop_sequence", stop_sequence="END"))
    req = ask(stop=["END"])
    req.extra = {"additionalModelResponseFieldPaths": ["/stop_sequence"]}
    resp = await provider.complete(req)
    assert (resp.stop_reason, resp.stop_sequence) == ("stop_sequence", "END")


async def test_streaming_text(fake, provider):
    fake.queue(Reply(text="Hello there", chunk_size=4))
    events = await collect(provider, ask())
    sent = fake.received[-1]
    assert sent.path.endswith("/converse-stream")
    assert sent.headers["Accept"] == "application/vnd.amazon.eventstream"
    assert isinstance(events[0], MessageStart) and events[0].model == PROFILE
    assert events[1] == BlockStart(0, TextBlock(""))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hell", "o th", "ere"]
    assert events[-2:] == [BlockStop(0), MessageEnd("end_turn", Usage(input_tokens=11,
                                                                      output_tokens=7))]


async def test_streaming_parallel_tool_calls_reassemble(fake, provider):
    args = {"city": "Oslo", "days": [1, 2, 3], "unit": "celsius"}
    fake.queue(Reply(text="ok", tool_calls=[ToolCall("weather", args, id="tu_a"),
                                            ToolCall("clock", {"tz": "UTC"}, id="tu_b")],
                     chunk_size=5))
    events = await collect(provider, ask())
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [(s.index, type(s.block).__name__) for s in starts] == [
        (0, "TextBlock"), (1, "ToolUseBlock"), (2, "ToolUseBlock")]
    assert [(s.block.id, s.block.name) for s in starts[1:]] == [("tu_a", "weather"),
                                                               ("tu_b", "clock")]
    parts = {1: "", 2: ""}
    for e in events:
        if isinstance(e, ToolArgsDelta):
            parts[e.index] += e.partial_json
    assert json.loads(parts[1]) == args and json.loads(parts[2]) == {"tz": "UTC"}
    assert sum(isinstance(e, ToolArgsDelta) and e.index == 1 for e in events) > 3
    assert events[-1].stop_reason == "tool_use"


async def test_streaming_usage_with_cache_tokens(fake, provider):
    fake.queue(Reply(text="x", input_tokens=30, output_tokens=12, cache_read_tokens=500,
                     cache_write_tokens=70))
    events = await collect(provider, ask())
    assert events[-1].usage == Usage(input_tokens=30, output_tokens=12, cache_read_tokens=500,
                                     cache_write_tokens=70)


ERROR_CASES = [
    (400, InvalidRequest), (403, PermissionDenied), (404, NotFound), (408, UpstreamTimeout),
    (424, UpstreamError), (429, RateLimited), (500, UpstreamError), (503, Overloaded),
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
    assert info.value.status == status and info.value.message == "nope"


async def test_rate_limit_carries_retry_after(fake, provider):
    fake.queue(Reply(error_status=429, error_message="slow down", retry_after=7))
    with pytest.raises(RateLimited) as info:
        await provider.complete(ask())
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("headers,body,status,kind,fragment", [
    ({"authorization": "Bearer bedrock-api-key-test"}, {"messages": []}, 400,
     "ValidationException", "must start with a user message"),
    ({"authorization": "Bearer bedrock-api-key-test"},
     {"messages": [{"role": "user", "content": [{"text": "x"}]}],
      "inferenceConfig": {"temperature": 1.5}}, 400, "ValidationException",
     "inferenceConfig.temperature"),
    ({"authorization": "Bearer bedrock-api-key-test"},
     {"modelId": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}, 400,
     "ValidationException", "extraneous key [modelId]"),
    ({"authorization": "Bearer bedrock-api-key-test"},
     {"messages": [{"role": "user", "content": [{"text": "x"}]},
                   {"role": "user", "content": [{"text": "y"}]}]}, 400,
     "ValidationException", "alternate"),
    ({}, {"messages": [{"role": "user", "content": [{"text": "x"}]}]}, 403,
     "MissingAuthenticationTokenException", "Missing Authentication Token"),
])
async def test_fake_refuses_what_bedrock_refuses(fake, session, headers, body, status, kind,
                                                 fragment):
    url = fake.base_url + "/model/m/converse"
    async with aiohttp.request("POST", url, json=body, headers=headers) as resp:
        assert resp.status == status
        assert resp.headers["x-amzn-errortype"].split(":")[0] == kind
        assert fragment in (await resp.json())["message"]


async def test_truncated_stream_is_an_upstream_error(fake, provider):
    fake.queue(Reply(text="a long answer", truncate_after=3))
    with pytest.raises(UpstreamError, match="ended before it finished") as info:
        await collect(provider, ask())
    assert info.value.status == 502


async def test_stream_cut_inside_a_frame(fake, provider):
    fake.partial_frame_bytes = 20
    fake.queue(Reply(text="a long answer", truncate_after=3))
    with pytest.raises(UpstreamError, match="ended inside a message"):
        await collect(provider, ask())


async def test_stream_missing_only_metadata_still_finishes(fake, provider):
    # messageStart, delta, contentBlockStop, messageStop: no metadata
    fake.queue(Reply(text="abc", chunk_size=10, truncate_after=4))
    events = await collect(provider, ask())
    assert events[-1] == MessageEnd("end_turn", Usage())


async def test_exception_in_the_middle_of_a_stream(fake, provider):
    fake.stream_exception = ("throttlingException", "Too many tokens, please wait")
    fake.queue(Reply(text="a long answer", truncate_after=3))
    got = []
    with pytest.raises(RateLimited, match="Too many tokens") as info:
        async for event in provider.stream(ask()):
            got.append(event)
    assert info.value.status == 429
    assert [e.text for e in got if isinstance(e, TextDelta)] == ["a l", "ong"]


async def test_client_leaving_a_stream_closes_the_upstream(fake, provider):
    fake.queue(Reply(text="x" * 400, chunk_size=1, event_delay=0.01))
    stream = provider.stream(ask())
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    assert await asyncio.to_thread(fake.client_disconnected.wait, 5)


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


# ---- an upstream that answers badly -----------------------------------------------------


async def serve(status: int, body: bytes, content_type: str):
    async def handler(request):
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.mark.parametrize("body,fragment", [
    (b"{this is not json", "not JSON"),
    (b'{"output": {"message": {"content": "oops"}}}', "content is not an array"),
])
async def test_malformed_json_reply(session, body, fragment):
    server = await serve(200, body, "application/json")
    try:
        with pytest.raises(UpstreamError, match=fragment) as info:
            await make_provider(session, str(server.make_url(""))).complete(ask())
        assert info.value.status == 502
    finally:
        await server.close()


async def test_corrupt_stream_reply(session):
    data = bytearray(event_message("messageStart", b'{"role":"assistant"}'))
    data[-1] ^= 0xFF
    server = await serve(200, bytes(data), "application/vnd.amazon.eventstream")
    try:
        with pytest.raises(UpstreamError, match="checksum mismatch"):
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
