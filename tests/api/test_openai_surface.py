"""The OpenAI Chat Completions surface, driven by the official openai SDK over HTTP."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from tests.fakes.script import Reply, ToolCall

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


@pytest.fixture
def client(gateway, fakes):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_text_answer(client, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello there"}])
    resp = raw.parse()
    assert resp.choices[0].message.content == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == model
    assert resp.id.startswith("chatcmpl-")
    assert resp.usage.prompt_tokens == 11 and resp.usage.completion_tokens == 7
    assert resp.usage.total_tokens == 18
    assert raw.headers["x-request-id"] in resp.id
    assert raw.headers["x-modelmart-deployment"].startswith(model)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_stream_text_with_usage(client, model, fakes):
    for fake in fakes:
        fake.queue(Reply(text="The quick brown fox jumps", chunk_size=4,
                         input_tokens=20, output_tokens=5))
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "go"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The quick brown fox jumps"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.prompt_tokens == 20 and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_parallel_tool_calls(client, model, fakes):
    calls = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Tōkyō"})]
    for fake in fakes:
        fake.queue(Reply(tool_calls=calls))
    resp = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER])
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in msg.tool_calls] == [
        {"city": "Paris"}, {"city": "Tōkyō"}]
    assert all(c.function.name == "get_weather" and c.id for c in msg.tool_calls)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_streamed_tool_call_arguments_reassemble(client, model, fakes):
    args = {"city": "Reykjavík", "days": [1, 2, 3], "note": "quote \" and {brace}"}
    for fake in fakes:
        fake.queue(Reply(text="Let me check.", tool_calls=[ToolCall("get_weather", args),
                                                           ToolCall("get_weather", {"city": "Oslo"})],
                         chunk_size=2))
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER], stream=True)
    text, calls = "", {}
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is None:
            continue
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            slot["id"] = tc.id or slot["id"]
            slot["name"] = (tc.function.name if tc.function else None) or slot["name"]
            slot["args"] += (tc.function.arguments or "") if tc.function else ""
    assert text == "Let me check."
    assert [json.loads(calls[i]["args"]) for i in sorted(calls)] == [args, {"city": "Oslo"}]
    assert all(c["id"] and c["name"] == "get_weather" for c in calls.values())


def test_parameters_reach_anthropic_upstream(client, fakes):
    _, anthropic_fake = fakes
    client.chat.completions.create(
        model="claude-fake",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "hi"}],
        temperature=0.5, top_p=0.9, max_completion_tokens=33, stop=["END"],
        tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    body = anthropic_fake.received[-1].body
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9 and body["max_tokens"] == 33
    assert body["stop_sequences"] == ["END"]
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tools"][0]["input_schema"]["required"] == ["city"]
    assert body["tool_choice"]["type"] == "any"
    assert body["tool_choice"].get("disable_parallel_tool_use") is True


def test_parameters_reach_openai_upstream(client, fakes):
    openai_fake, _ = fakes
    client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "hi"}],
        temperature=0.2, top_p=0.8, max_tokens=12, stop="X", seed=7,
        response_format={"type": "json_schema", "json_schema": {
            "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        frequency_penalty=0.3)
    body = openai_fake.received[-1].body
    assert body["model"] == "gpt-4o-mini"
    assert body["temperature"] == 0.2 and body["top_p"] == 0.8 and body["seed"] == 7
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 12
    assert body["stop"] in ("X", ["X"])
    assert body["response_format"]["json_schema"]["name"] == "answer"
    assert body["frequency_penalty"] == 0.3  # same-dialect extras pass through


def test_tool_results_and_images_cross_to_anthropic(client, fakes):
    _, anthropic_fake = fakes
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    client.chat.completions.create(model="claude-fake", messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ], tools=[WEATHER])
    msgs = anthropic_fake.received[-1].body["messages"]
    image = msgs[0]["content"][1]
    assert image["type"] == "image" and image["source"]["data"] == png
    assert image["source"]["media_type"] == "image/png"
    tool_use = msgs[1]["content"][0]
    assert tool_use == {"type": "tool_use", "id": "call_1", "name": "get_weather",
                        "input": {"city": "Paris"}}
    result = msgs[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"


@pytest.mark.parametrize("text", ["", "日本語のテキスト 🚀 ñ", "x" * 200_000])
def test_unicode_empty_and_long_content(client, text):
    resp = client.chat.completions.create(model="gpt-fake",
                                          messages=[{"role": "user", "content": text}])
    assert resp.choices[0].message.content == f"echo: {text}"


def test_models_list_and_get(client):
    ids = {m.id for m in client.models.list()}
    assert {"smollm2-135m", "gpt-fake", "claude-fake"} <= ids
    assert client.models.retrieve("gpt-fake").id == "gpt-fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
