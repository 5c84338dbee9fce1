"""The transport seam (``providers/transport.py``) and what ``providers/http.py`` makes of an
untrusted reply: providers run in process over ``MockTransport``, whose handler answers
with any status, headers and body, including ones no well-behaved upstream sends."""

from __future__ import annotations

import asyncio
import json

import pytest

from modelmart.core.errors import GatewayError, RateLimited, UpstreamError, UpstreamTimeout
from modelmart.core.types import Message, Request, TextBlock
from modelmart.providers.anthropic import AnthropicProvider
from modelmart.providers.base import ProviderConfig
from modelmart.providers.bedrock import BedrockProvider
from modelmart.providers.gemini import GeminiProvider
from modelmart.providers.http import MAX_RETRY_AFTER, new_session
from modelmart.providers.openai import OpenAIProvider
from modelmart.providers.transport import MockResponse, MockTransport

KEY = "sk-gateway-own-key-0123456789"
HEADER_SECRET = "tenant-secret-value-42"
AWS_ID, AWS_SECRET, AWS_TOKEN = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                 "FwoGZXIvYXdzEJr-session-token-value")
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hi"}}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def req(stream: bool = False) -> Request:
    return Request(model="m", messages=[Message("user", [TextBlock("hi")])], max_tokens=5,
                   stream=stream)


def openai(handler, **cfg) -> OpenAIProvider:
    cfg.setdefault("name", "oa-dep")
    cfg.setdefault("base_url", "http://up.invalid/v1")
    return OpenAIProvider(ProviderConfig("openai", "m", api_key=KEY, **cfg),
                          MockTransport(handler))


async def outcome(provider, stream: bool = False):
    try:
        if stream:
            return [e async for e in provider.stream(req(True))]
        return await provider.complete(req())
    except GatewayError as err:
        return err


async def test_a_provider_runs_over_the_mock_transport():
    transport = MockTransport(lambda r: MockResponse(200, {"Content-Type": "application/json"},
                                                     json.dumps(COMPLETION).encode()))
    provider = OpenAIProvider(ProviderConfig("openai", "m", base_url="http://up.invalid/v1",
                                             api_key=KEY), transport)
    resp = await provider.complete(req())
    assert resp.content[0].text == "hi"
    sent = transport.requests[0]
    assert sent.url == "http://up.invalid/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.body)["model"] == "m"


async def test_a_stream_in_chunks_and_a_stalled_one():
    frames = [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
              b'"choices":[{"index":0,"delta":{"content":"he"},"finish_reason":null}]}\n\n',
              b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
              b'"choices":[{"index":0,"delta":{"content":"y"},"finish_reason":"stop"}]}\n\n',
              b"data: [DONE]\n\n"]
    events = await outcome(openai(lambda r: MockResponse(200, {}, frames)), stream=True)
    assert "".join(getattr(e, "text", "") for e in events) == "hey"

    async def stall():
        yield frames[0]
        await asyncio.sleep(10)

    stalled = openai(lambda r: MockResponse(200, {}, stall()), first_token_timeout=0.1)
    err = await outcome(stalled, stream=True)
    assert isinstance(err, UpstreamTimeout) and "deployment 'oa-dep' stalled" in err.message


@pytest.mark.parametrize("status", [100, 101, 199, 302, 304, 399, 600, 999])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_status_that_is_no_final_error_status_is_a_502(status, stream):
    # A 304 with a body passed on as is would desynchronise the proxies in front of the
    # gateway; a 1xx or 999 is no status a client can be given.
    err = await outcome(openai(lambda r: MockResponse(status, {}, b"{}")), stream)
    assert isinstance(err, UpstreamError) and err.status == 502
    assert f"deployment 'oa-dep' answered HTTP {status}" in err.message


async def test_a_407_from_a_proxy_is_the_gateways_problem():
    err = await outcome(openai(lambda r: MockResponse(407, {}, b"proxy auth")))
    assert err.status == 502 and "proxy" in err.message


@pytest.mark.parametrize("header,value,expected", [
    ("retry-after", "inf", None), ("retry-after", "Infinity", None),
    ("retry-after", "1e400", None), ("retry-after", "nan", None), ("retry-after", "-5", None),
    ("retry-after", "1e12", MAX_RETRY_AFTER), ("retry-after", "2.5", 2.5),
    ("retry-after", "Wed, 21 Oct 99999 07:28:00 GMT", None),
    ("retry-after-ms", "nan", None), ("retry-after-ms", "1e400", None),
    ("retry-after-ms", "1500", 1.5),
])
async def test_retry_after_values_are_sane_or_ignored(header, value, expected):
    body = b'{"error": {"message": "slow down", "type": "requests"}}'
    err = await outcome(openai(lambda r: MockResponse(429, {header: value}, body)))
    assert isinstance(err, RateLimited) and err.retry_after == expected


@pytest.mark.parametrize("delay,expected", [("1e400s", None), ("9" * 400 + "s", None),
                                            ("1.2.3s", None), ("1e12s", None),
                                            ("99999999999s", MAX_RETRY_AFTER), ("3.5s", 3.5)])
async def test_a_gemini_retry_delay_is_sane_or_ignored(delay, expected):
    body = json.dumps({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                              "retryDelay": delay}]}}).encode()
    provider = GeminiProvider(ProviderConfig("gemini", "g", base_url="http://up.invalid",
                                             api_key=KEY), MockTransport(
        lambda r: MockResponse(429, {}, body)))
    err = await outcome(provider)
    assert isinstance(err, RateLimited) and err.retry_after == expected


def _echo(status: int, shape=lambda text: {"error": {"message": text, "type": "x"}}):
    """An upstream that quotes every header it received in its error message."""
    def handler(request):
        text = "you sent: " + json.dumps(request.headers)
        return MockResponse(status, {"content-type": "application/json"},
                            json.dumps(shape(text)).encode())
    return handler


@pytest.mark.parametrize("status", [400, 401, 500])
async def test_credentials_echoed_by_an_upstream_are_scrubbed(status):
    provider = openai(_echo(status), headers={"x-tenant-auth": HEADER_SECRET},
                      base_url="http://gwuser:gw-url-password@up.invalid/v1")
    err = await outcome(provider)
    assert err.status == status and "you sent" in err.message
    for secret in (KEY, HEADER_SECRET, "gw-url-password"):
        assert secret not in err.message
    assert "[redacted]" in err.message


async def test_anthropic_and_bedrock_credentials_are_scrubbed_too():
    anthropic = AnthropicProvider(ProviderConfig(
        "anthropic", "c", base_url="http://up.invalid", api_key="sk-ant-api03-" + "Q" * 30),
        MockTransport(_echo(400, lambda t: {"type": "error",
                                            "error": {"type": "invalid_request_error",
                                                      "message": t}})))
    err = await outcome(anthropic)
    assert "Q" * 30 not in err.message and "x-api-key" in err.message
    bedrock = BedrockProvider(ProviderConfig(
        "bedrock", "amazon.nova-lite-v1:0", base_url="http://up.invalid",
        options={"aws_access_key_id": AWS_ID, "aws_secret_access_key": AWS_SECRET,
                 "aws_session_token": AWS_TOKEN}),
        MockTransport(_echo(400, lambda t: {"message": t + " secret=" + AWS_SECRET})))
    err = await outcome(bedrock)
    assert "authorization" in err.message.lower()
    for secret in (AWS_ID, AWS_SECRET, AWS_TOKEN):
        assert secret not in err.message


async def test_a_key_in_an_error_event_mid_stream_is_scrubbed():
    frames = [b'data: {"error": {"message": "bad key ' + KEY.encode() + b'", "type": "x"}}\n\n']
    err = await outcome(openai(lambda r: MockResponse(200, {}, frames)), stream=True)
    assert isinstance(err, GatewayError) and KEY not in err.message


async def test_a_malformed_reply_quoting_a_key_is_scrubbed():
    body = json.dumps({"object": "chat.completion", "choices": KEY}).encode()
    err = await outcome(openai(lambda r: MockResponse(200, {}, body)))
    assert isinstance(err, UpstreamError) and KEY not in err.message


async def test_a_connection_failure_names_the_deployment_not_its_url():
    http = new_session(proxies={})
    provider = OpenAIProvider(ProviderConfig(
        "openai", "m", name="private-vllm", connect_timeout=2,
        base_url="http://svc:url-password-1@127.0.0.1:9/v1"), http)
    try:
        err = await outcome(provider)
    finally:
        await http.close()
    assert isinstance(err, UpstreamError)
    assert err.message == ("deployment 'private-vllm': the connection failed "
                           "(connection refused)")
    # The operator's log may have the address, never the password.
    assert "127.0.0.1:9" in err.detail and "url-password-1" not in err.detail
