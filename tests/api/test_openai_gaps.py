"""Smaller gaps of issue #16 with the openai SDK: ``code: "context_length_exceeded"`` on a
prompt over the window (the bundled model's, a deployment's declared window, an upstream's
own "too long" answer in each provider's words), and ``logprobs``/``top_logprobs`` passed
through to OpenAI-compatible upstreams and back, refused clearly where they cannot come."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.script import Reply
from tests.harness import GatewayServer


@pytest.fixture(scope="module")
def gateway(fake_openai, fake_anthropic):
    oa = {"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake_openai.base_url}/v1",
          "api_key": UPSTREAM_KEY}
    an = {"provider": "anthropic", "model": "claude-sonnet-4-5",
          "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY}
    server = GatewayServer({"models": {
        "gpt-g": oa,
        "claude-g": an,
        "tiny-window": {**oa, "capabilities": {"context_window": 50}},
        # Anthropic first: a logprobs request goes to the OpenAI deployment.
        "mixed-g": {"deployments": [{**an, "name": "mixed/anthropic"},
                                    {**oa, "name": "mixed/openai"}]},
        "no-logprobs": {**oa, "passthrough": ["frequency_penalty"]},
    }}).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway, fakes):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


def _ask(client, model: str, text: str = "Hello there", **kw):
    return client.chat.completions.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": text}], **kw)


def _code(err: openai.APIStatusError) -> str | None:
    return err.body.get("code") if isinstance(err.body, dict) else None


def test_the_bundled_models_window(client):
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "smollm2-135m", "word " * 3000)
    assert _code(err.value) == "context_length_exceeded"
    assert "context window" in err.value.message


def test_a_deployments_declared_window(client, fake_openai):
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "tiny-window", "word " * 400)
    assert _code(err.value) == "context_length_exceeded"
    assert not fake_openai.received


@pytest.mark.parametrize("model, message", [
    ("gpt-g", "This model's maximum context length is 128000 tokens. However, your "
              "messages resulted in 130000 tokens."),
    ("claude-g", "prompt is too long: 210000 tokens > 200000 maximum"),
])
def test_an_upstreams_too_long_answer(client, fake_openai, fake_anthropic, model, message):
    fake = fake_openai if model == "gpt-g" else fake_anthropic
    fake.queue(Reply(error_status=400, error_message=message))
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, model)
    assert _code(err.value) == "context_length_exceeded" and message in err.value.message
    fake.queue(Reply(error_status=400, error_message="temperature: out of range"))
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, model)
    assert _code(err.value) is None  # other 400s keep no code


def test_logprobs_come_back_from_an_openai_compatible_upstream(client, fake_openai):
    fake_openai.queue(Reply(text="Paris is lovely"))
    reply = _ask(client, "gpt-g", logprobs=True, top_logprobs=2)
    sent = fake_openai.received[-1].body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    content = reply.choices[0].logprobs.content
    assert [t.token for t in content] == ["Paris", " is", " lovely"]
    assert content[0].logprob == pytest.approx(-0.01)
    assert [a.token for a in content[1].top_logprobs] == [" is", " is~1"]
    assert _ask(client, "gpt-g").choices[0].logprobs is None  # not asked: none


def test_a_mixed_model_sends_logprobs_requests_to_the_deployment_that_can(client,
                                                                          fake_anthropic):
    raw = client.chat.completions.with_raw_response.create(
        model="mixed-g", max_tokens=16, logprobs=True,
        messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-modelmart-deployment"] == "mixed/openai"
    assert raw.parse().choices[0].logprobs is not None
    assert not fake_anthropic.received


@pytest.mark.parametrize("model", ["claude-g", "smollm2-135m", "no-logprobs"])
def test_logprobs_are_refused_where_they_cannot_come(client, model):
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, model, logprobs=True)
    assert err.value.body["param"] == "logprobs"
    assert "log probabilities" in err.value.message
    _ask(client, "gpt-g", logprobs=False)  # not asking is fine


def test_logprobs_are_refused_with_streaming(client):
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "gpt-g", logprobs=True, stream=True)
    assert err.value.body["param"] == "logprobs" and "stream" in err.value.message
