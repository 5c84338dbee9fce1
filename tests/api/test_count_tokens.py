"""``POST /v1/messages/count_tokens`` with the anthropic SDK's ``messages.count_tokens``:
exact for the bundled model (equal to what a real completion reports as its input
tokens), Anthropic's and Bedrock's own counts for their deployments, an estimate marked
as such elsewhere."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from modelmart.core.types import Message, Request, TextBlock
from modelmart.metering.bounds import input_token_bound, input_token_estimate
from tests.conftest import UPSTREAM_KEY
from tests.fakes import anthropic_server, bedrock_server
from tests.fakes.bedrock_server import FakeBedrock
from tests.harness import GatewayServer
from tests.marketplace.helpers import fresh_key

AWS_KEY, AWS_SECRET = "AKIDCOUNTTEST", "count-test-secret"
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


@pytest.fixture(scope="module")
def fake_bedrock():
    server = FakeBedrock(access_key=AWS_KEY, secret_key=AWS_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(fake_openai, fake_anthropic, fake_bedrock):
    server = GatewayServer({"models": {
        "claude-c": {"provider": "anthropic", "model": "claude-sonnet-4-5",
                     "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY},
        "nova-c": {"provider": "bedrock", "model": "us.amazon.nova-lite-v1:0",
                   "base_url": fake_bedrock.base_url,
                   "options": {"aws_access_key_id": AWS_KEY, "aws_secret_access_key": AWS_SECRET,
                               "region": "us-east-1"}},
        "gpt-c": {"provider": "openai", "model": "gpt-4o-mini",
                  "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY},
        # An upstream that is down: its count is estimated instead.
        "claude-down": {"provider": "anthropic", "model": "claude-sonnet-4-5",
                        "base_url": "http://127.0.0.1:9", "api_key": UPSTREAM_KEY,
                        "retries": {"attempts": 1}},
    }}).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway, fakes, fake_bedrock):
    fake_bedrock.received.clear()
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


CASES = {
    "one turn": dict(messages=[{"role": "user", "content": "What is the capital of France?"}]),
    "system and turns": dict(
        system="You are terse.",
        messages=[{"role": "user", "content": "Hi there"},
                  {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": [{"type": "text", "text": "Count: ünïcödé ✓"}]}]),
    "tools": dict(tools=[WEATHER],
                  messages=[{"role": "user", "content": "Weather in Paris?"}]),
    "tool result": dict(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "18 C and sunny"}]}]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bundled_model_count_equals_a_completions_input_tokens(client, case):
    kwargs = CASES[case]
    counted = client.messages.count_tokens(model="smollm2-135m", **kwargs)
    reply = client.messages.create(model="smollm2-135m", max_tokens=1, **kwargs)
    assert counted.input_tokens == reply.usage.input_tokens > 10
    raw = client.messages.with_raw_response.count_tokens(model="smollm2-135m", **kwargs)
    assert "x-modelmart-estimated" not in raw.headers
    assert raw.headers["x-modelmart-deployment"] == "smollm2-135m/local"


def test_anthropic_deployment_answers_anthropics_own_count(client, fake_anthropic):
    counted = client.messages.count_tokens(
        model="claude-c", system="Be brief.", tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Oslo?"}])
    [sent] = fake_anthropic.received
    assert sent.path == "/v1/messages/count_tokens"
    assert set(sent.body) == {"model", "messages", "system", "tools"}  # no max_tokens
    assert sent.body["model"] == "claude-sonnet-4-5"
    assert counted.input_tokens == anthropic_server.fake_count(sent.body)


def test_bedrock_deployment_answers_count_tokens(client, fake_bedrock):
    raw = client.messages.with_raw_response.count_tokens(
        model="nova-c", system="Be brief.", messages=[{"role": "user", "content": "Hello"}])
    [sent] = fake_bedrock.received
    assert sent.path == "/model/us.amazon.nova-lite-v1%3A0/count-tokens"
    converse = sent.body["input"]["converse"]
    assert converse["system"] == [{"text": "Be brief."}]
    assert raw.parse().input_tokens == bedrock_server.fake_count(converse)
    assert "x-modelmart-estimated" not in raw.headers


@pytest.mark.parametrize("model", ["gpt-c", "claude-down"])
def test_other_deployments_answer_an_estimate_marked_as_such(client, fake_openai, model):
    messages = [{"role": "user", "content": "Four characters a token, more or less."}]
    raw = client.messages.with_raw_response.count_tokens(model=model, messages=messages)
    request = Request(model=model, messages=[Message("user", [TextBlock(messages[0]["content"])])])
    assert raw.parse().input_tokens == input_token_estimate(request)
    assert raw.headers["x-modelmart-estimated"] == "true"
    assert int(raw.headers["x-modelmart-input-token-bound"]) == input_token_bound(request)
    assert not fake_openai.received  # nothing was sent upstream


def test_count_tokens_errors(gateway, client):
    with pytest.raises(anthropic.NotFoundError, match="no-such-model"):
        client.messages.count_tokens(model="no-such-model",
                                     messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.count_tokens(model="smollm2-135m", messages=[])
    limited = anthropic.Anthropic(base_url=gateway.url, max_retries=0,
                                  api_key=fresh_key(gateway, models=["gpt-c"]))
    with pytest.raises(anthropic.PermissionDeniedError):
        limited.messages.count_tokens(model="claude-c",
                                      messages=[{"role": "user", "content": "x"}])
    resp = httpx.post(f"{gateway.url}/v1/messages/count_tokens",
                      json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401 and resp.json()["type"] == "error"
