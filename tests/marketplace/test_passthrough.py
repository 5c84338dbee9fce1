"""Issue #12: fields the ledger cannot price (a priority service tier, stored conversations,
web search, audio, predicted outputs, MCP servers, code containers) never reach an upstream
unless the operator allows them per deployment (catalog ``passthrough:``); other unknown
fields are dropped and named; the allowed ones pass unchanged."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.harness import GatewayServer
from tests.marketplace.helpers import UPSTREAM_KEY

MSG = [{"role": "user", "content": "hello"}]


def _oa(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


@pytest.mark.parametrize("field,value", [
    ("service_tier", "priority"), ("store", True), ("web_search_options", {}),
    ("modalities", ["text", "audio"]), ("audio", {"voice": "alloy", "format": "wav"}),
    ("prediction", {"type": "content", "content": "x"}),
])
def test_cost_bearing_openai_fields_are_refused(priced, scripted, field, value):
    fake_openai, _ = scripted
    with pytest.raises(openai.BadRequestError) as caught:
        _oa(priced).chat.completions.create(model="oa-list", messages=MSG,
                                            extra_body={field: value})
    assert caught.value.body["param"] == field
    assert "operator has not enabled it" in caught.value.body["message"]
    assert not fake_openai.received


@pytest.mark.parametrize("field,value", [
    ("mcp_servers", [{"type": "url", "url": "https://mcp.example", "name": "x"}]),
    ("container", "container_1"), ("service_tier", "auto"),
])
def test_cost_bearing_anthropic_fields_are_refused(priced, scripted, field, value):
    _, fake_anthropic = scripted
    client = anthropic.Anthropic(base_url=priced.url, api_key=priced.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="an-list", max_tokens=10, messages=MSG,
                               extra_body={field: value})
    assert field in caught.value.body["error"]["message"]
    assert not fake_anthropic.received


def test_allowed_fields_pass_and_unknown_ones_are_dropped_and_named(priced, scripted):
    fake_openai, _ = scripted
    raw = _oa(priced).chat.completions.with_raw_response.create(
        model="oa-list", messages=MSG, frequency_penalty=0.5, logprobs=True,
        extra_body={"made_up_field": 1, "another": "x"})
    sent = fake_openai.received[-1].body
    assert sent["frequency_penalty"] == 0.5 and sent["logprobs"] is True
    assert "made_up_field" not in sent and "another" not in sent
    assert raw.headers["x-modelmart-dropped-params"] == "another,made_up_field"


def test_the_operator_can_allow_a_cost_bearing_field(fake_openai, scripted):
    catalog = {"bundled_model": False, "models": {"priority": {
        "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake_openai.base_url}/v1",
        "api_key": UPSTREAM_KEY, "passthrough": ["service_tier"],
        "cost": {"input": "1", "output": "2", "cache_read": "1", "cache_write": "1"}}}}
    gateway = GatewayServer(catalog).start()
    try:
        raw = _oa(gateway).chat.completions.with_raw_response.create(
            model="priority", messages=MSG, service_tier="priority", frequency_penalty=0.1)
        sent = fake_openai.received[-1].body
        assert sent["service_tier"] == "priority"
        # The operator's list replaces the default: frequency_penalty is not on it.
        assert "frequency_penalty" not in sent
        assert raw.headers["x-modelmart-dropped-params"] == "frequency_penalty"
    finally:
        gateway.stop()


def test_a_cross_dialect_upstream_never_receives_client_fields(priced, scripted):
    """An OpenAI client's fields mean nothing to an Anthropic upstream: none are passed."""
    _, fake_anthropic = scripted
    _oa(priced).chat.completions.create(model="an-list", messages=MSG, frequency_penalty=0.5)
    assert "frequency_penalty" not in fake_anthropic.received[-1].body


def test_dropped_field_names_cannot_break_or_forge_headers(priced, scripted):
    """A client's field name may hold anything: the header that names dropped fields is
    percent-encoded and bounded (found by the fuzzer: a non-Latin-1 name was a 500)."""
    import httpx

    fields = {"naïve \U000ffa32": 1, "evil\r\nset-cookie: x": 2,
              **{f"f{i:03d}": i for i in range(30)}}
    resp = httpx.post(f"{priced.url}/v1/chat/completions",
                      headers={"authorization": f"Bearer {priced.key}"},
                      json={"model": "oa-list", "messages": MSG, **fields})
    assert resp.status_code == 200, resp.text
    value = resp.headers["x-modelmart-dropped-params"]
    assert "\r" not in value and "\n" not in value and value.isascii()
    assert "evil%0D%0Aset-cookie" in value and value.endswith("...12 more")
    assert "set-cookie" not in resp.headers
