"""GET /v1/models and /v1/models/{id} (issue #12): a valid API key is needed, as for a model
call, and a key sees only the models it may use; anything else is a 404 in the caller's
dialect. The official SDKs as clients."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest


def _wait_for(gateway, secret: str) -> str:
    deadline = time.monotonic() + 5
    while gateway.app.keys.lookup(secret) is None:  # the key cache polls the store
        assert time.monotonic() < deadline, "the new key was not picked up"
        time.sleep(0.05)
    return secret


@pytest.fixture(scope="module")
def narrow_key(gateway):
    return _wait_for(gateway, gateway.new_key(models=["gpt-fake"]))


@pytest.mark.parametrize("path", ["/v1/models", "/models", "/v1/models/gpt-fake"])
@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer mm-not-a-key"},
                                     {"x-api-key": "mm-not-a-key"}])
def test_models_need_a_valid_key_openai_shape(gateway, path, headers):
    resp = httpx.get(gateway.url + path, headers=headers, timeout=10)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["type"] == "authentication_error"
    assert "gpt-fake" not in resp.text or path.endswith("gpt-fake")


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/claude-fake"])
def test_models_need_a_valid_key_anthropic_shape(gateway, path):
    resp = httpx.get(gateway.url + path, headers={"anthropic-version": "2023-06-01"}, timeout=10)
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"


def test_sdks_without_a_valid_key_are_refused(gateway):
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="mm-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        oa.models.list()
    an = anthropic.Anthropic(base_url=gateway.url, api_key="mm-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        an.models.list()


def test_a_key_lists_only_its_models(gateway, narrow_key):
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=narrow_key, max_retries=0)
    assert [m.id for m in oa.models.list()] == ["gpt-fake"]
    assert oa.models.retrieve("gpt-fake").id == "gpt-fake"
    an = anthropic.Anthropic(base_url=gateway.url, api_key=narrow_key, max_retries=0)
    assert [m.id for m in an.models.list()] == ["gpt-fake"]
    assert an.models.retrieve("gpt-fake").id == "gpt-fake"
    # A key without a list sees the whole catalog.
    everything = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    assert {"gpt-fake", "claude-fake"} <= {m.id for m in everything.models.list()}


@pytest.mark.parametrize("model", ["claude-fake", "no-such-model"])
def test_a_model_the_key_may_not_use_is_a_404_in_each_dialect(gateway, narrow_key, model):
    """Forbidden and unknown look alike: a key cannot learn what else the catalog holds."""
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=narrow_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        oa.models.retrieve(model)
    assert model in str(e.value) and "gpt-fake" not in str(e.value)
    an = anthropic.Anthropic(base_url=gateway.url, api_key=narrow_key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as e:
        an.models.retrieve(model)
    assert e.value.body["error"]["type"] == "not_found_error"
