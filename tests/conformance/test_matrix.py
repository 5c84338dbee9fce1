"""The conformance matrix (issue #5): every client surface, through its official SDK, against
every provider, streamed and not — text, a tool call, parallel tool calls, tool results,
images and errors. Fake upstreams answer from a script; the local provider is the real
bundled model. Cells that do not apply are not generated (see ``cells.NOT_APPLICABLE``)."""

from __future__ import annotations

import json

import pytest

from tests.fakes.script import Reply, ToolCall

from . import providers as upstream
from .cells import Cell, cells
from .providers import MODEL, UPSTREAM_MODEL
from .spec import (PNG_B64, TOOL_USE_ID, TOOLS, WEATHER, conversation_image,
                   conversation_text, conversation_tool_result, matches_schema)

TEXT = 'Grüße aus Zürich — 東京 🚀 "quoted" {braces}'
WEATHER_ARGS = {"city": "Zürich", "unit": "celsius"}
TRIP_ARGS = {"traveller": {"name": "Zoë Ångström", "age": 31},
             "stops": [{"city": "Reykjavík", "nights": 2}, {"city": "東京", "nights": 1}],
             "note": 'window seat, "quiet" {please}'}
PARALLEL = [ToolCall("get_weather", {"city": "Tōkyō", "unit": "celsius"}, id="call_conf_1"),
            ToolCall("book_trip", TRIP_ARGS, id="call_conf_2")]
# The bundled model: greedy and short.
LOCAL = {"temperature": 0.0}


def _last(fake) -> dict:
    assert fake.received, "nothing reached the upstream"
    return fake.received[-1].body


# ---- scenarios --------------------------------------------------------------------------


def text(client, provider, fake, stream):
    if fake is None:
        r = client.complete(MODEL[provider], conversation_text("Name a colour."),
                            stream=stream, max_tokens=8, **LOCAL)
        assert r.text.strip()
        assert r.stop in (client.STOP_END, client.STOP_MAX)
        assert r.input_tokens > 0 and 0 < r.output_tokens <= 8
        return
    fake.queue(Reply(text=TEXT, input_tokens=23, output_tokens=9, chunk_size=4))
    r = client.complete(MODEL[provider], conversation_text("Say it in three scripts"),
                        stream=stream)
    assert r.text == TEXT
    assert r.tool_calls == []
    assert r.stop == client.STOP_END
    assert (r.input_tokens, r.output_tokens) == (23, 9)
    sent = fake.received[-1]
    assert UPSTREAM_MODEL[provider] in json.dumps(sent.body) + sent.path
    assert "Say it in three scripts" in json.dumps(sent.body, ensure_ascii=False)


def tool(client, provider, fake, stream):
    # Forced both ways: "any" (OpenAI's "required") when not streamed, by name when streamed
    # (the local model calls a tool only when forced).
    choice = ("tool", "get_weather") if stream else "any"
    if fake is None:
        r = client.complete(MODEL[provider], conversation_text("What is the weather in Paris?"),
                            tools=[WEATHER], tool_choice=choice, stream=stream, max_tokens=40,
                            **LOCAL)
        assert [c.name for c in r.tool_calls] == ["get_weather"], r
        assert matches_schema(r.tool_calls[0].arguments, WEATHER.schema), r.tool_calls
        assert r.tool_calls[0].id
        assert r.stop == client.STOP_TOOL
        assert r.input_tokens > 0 and r.output_tokens > 0
        return
    fake.queue(Reply(tool_calls=[ToolCall("get_weather", WEATHER_ARGS)], chunk_size=3))
    r = client.complete(MODEL[provider], conversation_text("Weather in Zürich?"), tools=TOOLS,
                        tool_choice=choice, stream=stream)
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_weather", WEATHER_ARGS)]
    # Gemini to Gemini: the upstream sent no id, and the client gets none (the gateway's
    # made-up ids are its own, never put on Gemini's wire).
    assert r.tool_calls[0].id or (client.name == provider == "gemini")
    assert r.text == ""
    assert r.stop == client.STOP_TOOL
    assert (r.input_tokens, r.output_tokens) == (11, 7)
    body = _last(fake)
    assert upstream.tool_names(provider, body) == ["get_weather", "book_trip"]
    assert upstream.tool_choice_sent(provider, body) == choice


def parallel_tools(client, provider, fake, stream):
    # Gemini usually sends calls without ids: the gateway must make up distinct ones.
    # Every other provider names its calls, and the names must come through unchanged.
    calls = [ToolCall(c.name, c.arguments, id=None if provider == "gemini" else c.id)
             for c in PARALLEL]
    fake.queue(Reply(text="Checking both.", tool_calls=calls, chunk_size=5))
    r = client.complete(MODEL[provider], conversation_text("Weather in Tokyo, and book my trip"),
                        tools=TOOLS, stream=stream)
    assert r.text == "Checking both."
    assert [(c.name, c.arguments) for c in r.tool_calls] == [(c.name, c.arguments)
                                                              for c in PARALLEL]
    ids = [c.id for c in r.tool_calls]
    if provider == "gemini" and client.name == "gemini":
        assert ids == [None, None], ids
    elif provider == "gemini":
        assert all(ids) and len(set(ids)) == 2, ids
    else:
        assert ids == [c.id for c in PARALLEL]
    assert r.stop == client.STOP_TOOL
    assert (r.input_tokens, r.output_tokens) == (11, 7)


def tool_result(client, provider, fake, stream):
    if fake is None:
        # No tools offered: the answer must be text, written from the result.
        r = client.complete(MODEL[provider], conversation_tool_result(), stream=stream,
                            max_tokens=12, **LOCAL)
        assert r.text.strip() and not r.tool_calls
        assert r.stop in (client.STOP_END, client.STOP_MAX)
        assert r.input_tokens > 0 and r.output_tokens > 0
        return
    fake.queue(Reply(text="It is sunny in Paris."))
    r = client.complete(MODEL[provider], conversation_tool_result(), tools=TOOLS, stream=stream)
    assert r.text == "It is sunny in Paris."
    assert r.stop == client.STOP_END
    assert (r.input_tokens, r.output_tokens) == (11, 7)
    sent = upstream.tool_exchange(provider, _last(fake))
    assert sent["call_name"] == "get_weather"
    assert sent["call_args"] == {"city": "Paris", "unit": "celsius"}
    assert "sunny, 21 °C, light breeze" in sent["result_text"]
    if provider == "gemini":
        # Gemini matches a result to its call by the function's name.
        assert sent["result_name"] == "get_weather"
    else:
        assert sent["call_id"] == sent["result_id"] == TOOL_USE_ID


def image(client, provider, fake, stream):
    if fake is None:
        with pytest.raises(client.error_class(400)) as e:
            client.complete(MODEL[provider], conversation_image(), stream=stream)
        assert client.status_of(e.value) == 400
        assert "image" in client.message_of(e.value).lower()
        return
    fake.queue(Reply(text="A single red pixel."))
    r = client.complete(MODEL[provider], conversation_image(), stream=stream)
    assert r.text == "A single red pixel."
    assert upstream.image(provider, _last(fake)) == ("image/png", PNG_B64)


def _error(status: int):
    def scenario(client, provider, fake, stream):
        if fake is None:  # only a 400 can be provoked: a prompt over the context window
            turns = conversation_text("lorem ipsum dolor " * 1200)
            with pytest.raises(client.error_class(400)) as e:
                client.complete(MODEL[provider], turns, stream=stream)
            assert client.status_of(e.value) == 400
            assert "context window" in client.message_of(e.value)
            return
        retry_after = 7 if status == 429 else None
        fake.queue(Reply(error_status=status, error_message=f"scripted {status} failure",
                         retry_after=retry_after))
        with pytest.raises(client.error_class(status)) as e:
            client.complete(MODEL[provider], conversation_text("fail please"), stream=stream)
        assert client.status_of(e.value) == status
        assert f"scripted {status} failure" in client.message_of(e.value)
        if retry_after is not None:
            assert client.retry_after_of(e.value) == "7"
        assert len(fake.received) == 1, "the error was retried"
    scenario.__name__ = f"error_{status}"
    return scenario


def error_midstream(client, provider, fake, stream):
    assert stream
    fake.queue(Reply(text="this stream will be cut short", chunk_size=2, truncate_after=4))
    with pytest.raises(client.MIDSTREAM_ERROR) as e:
        client.complete(MODEL[provider], conversation_text("stream, then fail"), stream=True)
    assert str(e.value)


SCENARIO = {f.__name__: f for f in (text, tool, parallel_tools, tool_result, image,
                                     _error(400), _error(429), _error(500), _error(503),
                                     error_midstream)}


@pytest.mark.parametrize("cell", cells(), ids=lambda c: c.id)
def test_matrix(cell: Cell, clients, upstreams):
    fake = upstreams.get(cell.provider)
    SCENARIO[cell.scenario](clients[cell.surface], cell.provider, fake, cell.stream)
    if fake is not None:
        assert not fake.replies, "a scripted reply was never requested"
