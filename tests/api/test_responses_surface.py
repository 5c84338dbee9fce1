"""The OpenAI Responses surface, driven by the official openai SDK, against every provider."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes.script import Reply, ToolCall

TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}


@pytest.fixture
def client(gateway, fakes):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_text(client, model):
    resp = client.responses.create(model=model, input="hello there", instructions="be kind")
    assert resp.output_text == "echo: hello there"
    assert resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.usage.input_tokens == 11 and resp.usage.output_tokens == 7


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_stream_function_calls(client, model, fakes):
    for fake in fakes:
        fake.queue(Reply(text="Checking.", tool_calls=[ToolCall("get_weather", {"city": "Oslo"}),
                                                        ToolCall("get_weather", {"city": "Rome"})],
                         chunk_size=2))
    with client.responses.stream(model=model, input="weather?", tools=[TOOL]) as stream:
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert final.output_text == "Checking."


def test_function_call_output_reaches_upstream(client, fakes):
    _, anthropic_fake = fakes
    client.responses.create(model="claude-fake", tools=[TOOL], input=[
        {"role": "user", "content": "weather in Oslo?"},
        {"type": "function_call", "call_id": "call_9", "name": "get_weather",
         "arguments": "{\"city\": \"Oslo\"}"},
        {"type": "function_call_output", "call_id": "call_9", "output": "snow"},
    ])
    msgs = anthropic_fake.received[-1].body["messages"]
    assert msgs[1]["content"][0]["type"] == "tool_use" and msgs[1]["content"][0]["id"] == "call_9"
    assert msgs[2]["content"][0]["type"] == "tool_result"


def test_bundled_model_through_responses(client):
    resp = client.responses.create(model="smollm2-135m", input="Say hi.", max_output_tokens=8)
    assert resp.output_text
