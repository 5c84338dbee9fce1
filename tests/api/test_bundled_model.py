"""The bundled SmolLM2 model answers both SDKs, streamed and not, offline and keyless."""

from __future__ import annotations

import anthropic
import openai
import pytest

MODEL = "smollm2-135m"


@pytest.fixture
def oa(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


@pytest.fixture
def an(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


def test_openai_sdk_gets_a_real_answer(oa):
    resp = oa.chat.completions.create(model=MODEL, max_tokens=20, temperature=0, seed=1,
                                      messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert resp.choices[0].message.content.strip()
    assert resp.usage.prompt_tokens > 5 and 0 < resp.usage.completion_tokens <= 20


def test_openai_sdk_stream_matches_non_stream(oa):
    kwargs = dict(model=MODEL, max_tokens=16, temperature=0, seed=3,
                  messages=[{"role": "user", "content": "Name a color."}])
    whole = oa.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       oa.chat.completions.create(stream=True, **kwargs) if c.choices)
    assert streamed == whole and whole


def test_anthropic_sdk_gets_a_real_answer(an):
    msg = an.messages.create(model=MODEL, max_tokens=20, system="You are terse.",
                             messages=[{"role": "user", "content": "Say hello."}])
    assert msg.content[0].text.strip()
    assert msg.usage.input_tokens > 5 and msg.usage.output_tokens > 0


def test_anthropic_sdk_stream(an):
    with an.messages.stream(model=MODEL, max_tokens=10,
                            messages=[{"role": "user", "content": "Count: one, two,"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_images_are_refused_clearly(oa):
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert "image" in str(e.value)
