"""The matrix's own servers: four fake upstreams and one gateway in front of them and of the
bundled model, built once per module; the fakes' scripts and logs are emptied per test."""

from __future__ import annotations

import time

import pytest

from tests.harness import GatewayServer

from .clients import (AnthropicClient, BedrockClient, GeminiClient, OpenAIChatClient,
                      ResponsesClient)
from .providers import catalog, start_fakes


@pytest.fixture(scope="module")
def upstreams():
    fakes = start_fakes()
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture(scope="module")
def gateway(upstreams):
    server = GatewayServer(catalog(upstreams)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clients(gateway):
    akid, secret = gateway.new_aws_key()
    deadline = time.monotonic() + 5
    while gateway.app.keys.by_aws_access_key_id(akid) is None:  # the key cache polls
        assert time.monotonic() < deadline, "the new AWS key was not picked up"
        time.sleep(0.05)
    return {
        "openai-chat": OpenAIChatClient(gateway.url, gateway.key),
        "anthropic-messages": AnthropicClient(gateway.url, gateway.key),
        "openai-responses": ResponsesClient(gateway.url, gateway.key),
        "bedrock-converse": BedrockClient(gateway.url, akid, secret),
        "gemini": GeminiClient(gateway.url, gateway.key),
    }


@pytest.fixture(autouse=True)
def fresh_upstreams(upstreams):
    """Empty scripts and logs before each test."""
    for fake in upstreams.values():
        fake.replies.clear()
        fake.received.clear()
        fake.client_disconnected.clear()
