"""The Anthropic Messages surface, driven by the official anthropic SDK over HTTP."""

from __future__ import annotations

import base64

import anthropic
import pytest

from tests.fakes.script import Reply, ToolCall

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


@pytest.fixture
def client(gateway, fakes):
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_text_answer(client, model):
    msg = client.messages.create(model=model, max_tokens=50,
                                 messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.model == model
    assert msg.id.startswith("msg_")
    assert msg.usage.input_tokens == 11 and msg.usage.output_tokens == 7


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_stream_event_sequence(client, model, fakes):
    for fake in fakes:
        fake.queue(Reply(text="Streaming works fine", chunk_size=5, input_tokens=30,
                         output_tokens=4))
    with client.messages.stream(model=model, max_tokens=50,
                                messages=[{"role": "user", "content": "go"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert "message_delta" in kinds
    assert final.content[0].text == "Streaming works fine"
    assert final.usage.input_tokens == 30 and final.usage.output_tokens == 4
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_parallel_tool_use(client, model, fakes):
    calls = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Lima"})]
    for fake in fakes:
        fake.queue(Reply(text="Checking.", tool_calls=calls))
    msg = client.messages.create(model=model, max_tokens=100, tools=[WEATHER],
                                 messages=[{"role": "user", "content": "weather?"}])
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "Paris"}, {"city": "Lima"}]
    assert all(u.id and u.name == "get_weather" for u in uses)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_streamed_tool_input_reassembles(client, model, fakes):
    args = {"city": "Zürich", "nested": {"list": [1, "two", None, True]}}
    for fake in fakes:
        fake.queue(Reply(tool_calls=[ToolCall("get_weather", args)], chunk_size=3))
    with client.messages.stream(model=model, max_tokens=100, tools=[WEATHER],
                                messages=[{"role": "user", "content": "w"}]) as stream:
        final = stream.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.input == args and final.stop_reason == "tool_use"


def test_parameters_reach_openai_upstream(client, fakes):
    openai_fake, _ = fakes
    client.messages.create(
        model="gpt-fake", max_tokens=21, system="be brief",
        # anthropic>=2.14 no longer takes sampling arguments; the wire still carries them.
        extra_body={"temperature": 0.3, "top_p": 0.7},
        stop_sequences=["STOP"], tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "hi"}])
    body = openai_fake.received[-1].body
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["temperature"] == 0.3 and body["top_p"] == 0.7
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 21
    assert body["stop"] == ["STOP"]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_results_and_images_cross_to_openai(client, fakes):
    openai_fake, _ = fakes
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    client.messages.create(model="gpt-fake", max_tokens=10, tools=[WEATHER], messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rainy"}]},
    ])
    msgs = openai_fake.received[-1].body["messages"]
    assert msgs[0]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{png}"
    assert msgs[1]["tool_calls"][0]["id"] == "toolu_1"
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "rainy"} or (
        msgs[2]["role"] == "tool" and msgs[2]["tool_call_id"] == "toolu_1")


def test_models_list_in_anthropic_shape(client):
    ids = [m.id for m in client.models.list()]
    assert "smollm2-135m" in ids and "claude-fake" in ids


def test_a_base_url_ending_in_v1_is_told_how_to_fix_it(gateway):
    client = anthropic.Anthropic(base_url=f"{gateway.url}/v1", api_key=gateway.key,
                                 max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="gpt-4o-mini", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert "without /v1" in caught.value.body["error"]["message"]
