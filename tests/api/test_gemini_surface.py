"""Gemini as a client surface (issue #16): ``/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, the key in ``x-goog-api-key`` or ``?key=``; the
conformance matrix drives it with google-genai against every provider."""

from __future__ import annotations

import httpx
import pytest

from tests.conformance.providers import catalog, start_fakes
from tests.harness import GatewayServer

BODY = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}


@pytest.fixture(scope="module")
def gateway():
    fakes = start_fakes()
    server = GatewayServer(catalog(fakes)).start()
    yield server
    server.stop()
    for fake in fakes.values():
        fake.stop()


def _model(gateway) -> str:
    return next(m for m in gateway.app.catalog.models if m != "smollm2-135m")


def test_the_key_may_come_in_the_query_string(gateway):
    url = f"{gateway.url}/v1beta/models/{_model(gateway)}:generateContent"
    resp = httpx.post(url, params={"key": gateway.key}, json=BODY)
    assert resp.status_code == 200, resp.text
    assert resp.json()["candidates"][0]["content"]["parts"][0]["text"]


def test_a_missing_or_wrong_key_is_a_google_error(gateway):
    url = f"{gateway.url}/v1beta/models/{_model(gateway)}:generateContent"
    for headers in ({}, {"x-goog-api-key": "mm-wrong"}):
        resp = httpx.post(url, headers=headers, json=BODY)
        assert resp.status_code == 401
        assert resp.json()["error"]["status"] == "UNAUTHENTICATED"


def test_streaming_without_sse_is_refused_clearly(gateway):
    url = f"{gateway.url}/v1beta/models/{_model(gateway)}:streamGenerateContent"
    resp = httpx.post(url, headers={"x-goog-api-key": gateway.key}, json=BODY)
    assert resp.status_code == 400
    assert "alt=sse" in resp.json()["error"]["message"]
    ok = httpx.post(url, params={"alt": "sse"}, headers={"x-goog-api-key": gateway.key},
                    json=BODY)
    assert ok.status_code == 200 and ok.text.startswith("data: ")

