"""The local provider against the real bundled SmolLM2-135M model (loaded once per module)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import pytest_asyncio

from modelmart.core.errors import InvalidRequest, Overloaded
from modelmart.core.types import (
    BlockStart,
    BlockStop,
    ImageBlock,
    Message,
    MessageEnd,
    MessageStart,
    Request,
    ResponseFormat,
    TextBlock,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from modelmart.providers.base import ProviderConfig
from modelmart.providers.local import LocalProvider
from modelmart.providers.local.generate import Finished, TextStream
from modelmart.providers.local.prompt import chat_messages
from modelmart.providers.local.shape import Shaper

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = "smollm2-135m"
# SmolLM2's template adds this system turn when the request has none.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
WEATHER = Tool(
    name="get_weather",
    description="Get the current weather for a city",
    input_schema={
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
)


def ask(text: str, **kw) -> Request:
    kw.setdefault("temperature", 0)
    kw.setdefault("seed", 7)
    return Request(model=MODEL, messages=[Message("user", [TextBlock(text)])], **kw)


def make_provider(**options) -> LocalProvider:
    return LocalProvider(ProviderConfig(kind="local", model=MODEL, options=options), None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local():
    provider = make_provider()
    await provider.start()
    yield provider
    await provider.aclose()


def text_of(response) -> str:
    return "".join(b.text for b in response.content if isinstance(b, TextBlock))


async def test_answers_a_question_with_usage_from_the_tokenizer(local):
    resp = await local.complete(ask("What is the capital of France?", max_tokens=24))
    text = text_of(resp)
    assert text.strip()
    prompt = (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert resp.usage.input_tokens == local.count_tokens(prompt, special=True)
    assert 0 < resp.usage.output_tokens <= 24
    assert resp.usage.output_tokens == local.count_tokens(text)
    assert resp.model == MODEL and resp.id.startswith("msg_")


async def test_stream_equals_complete_at_temperature_zero(local):
    request = ask("Name three colors.", max_tokens=20, seed=3)
    whole = await local.complete(request)
    events = [e async for e in local.stream(request)]
    assert isinstance(events[0], MessageStart)
    assert events[0].usage.input_tokens == whole.usage.input_tokens
    assert events[1] == BlockStart(0, TextBlock(""))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3  # it really streamed, token by token
    assert "".join(deltas) == text_of(whole)
    assert events[-2] == BlockStop(0)
    end = events[-1]
    assert isinstance(end, MessageEnd)
    assert end.stop_reason == whole.stop_reason
    assert end.usage.output_tokens == whole.usage.output_tokens


async def test_max_tokens_stops_generation(local):
    resp = await local.complete(ask("Write a long story about a dragon.", max_tokens=5))
    assert resp.stop_reason == "max_tokens"
    assert resp.usage.output_tokens == 5
    assert text_of(resp)


async def test_stop_sequence_cuts_the_text(local):
    request = ask("Write a long story about a dragon.", max_tokens=30)
    free = text_of(await local.complete(request))
    words = free.split()
    stop = " " + words[len(words) // 2]  # a word from the middle of the free answer
    request.stop = [stop]
    resp = await local.complete(request)
    assert resp.stop_reason == "stop_sequence" and resp.stop_sequence == stop
    assert text_of(resp) == free[: free.index(stop)]
    streamed = [e async for e in local.stream(request)]
    assert "".join(e.text for e in streamed if isinstance(e, TextDelta)) == text_of(resp)
    assert streamed[-1].stop_sequence == stop


async def test_json_object_output_parses(local):
    request = ask("Give me a JSON object describing France with its capital.", max_tokens=60,
                  response_format=ResponseFormat("json_object"))
    resp = await local.complete(request)
    assert resp.stop_reason == "end_turn"
    assert isinstance(json.loads(text_of(resp)), dict)


async def test_json_schema_output_matches_the_schema(local):
    schema = {
        "type": "object",
        "properties": {
            "country": {"type": "string", "maxLength": 30},
            "capital": {"type": "string", "maxLength": 30},
            "population_millions": {"type": "integer"},
        },
        "required": ["country", "capital", "population_millions"],
    }
    request = ask("Describe France.", max_tokens=80,
                  response_format=ResponseFormat("json_schema", schema=schema))
    data = json.loads(text_of(await local.complete(request)))
    assert set(data) == {"country", "capital", "population_millions"}
    assert isinstance(data["country"], str) and isinstance(data["capital"], str)
    assert isinstance(data["population_millions"], int)


@pytest.mark.parametrize("choice", [ToolChoice("any"), ToolChoice("tool", name="get_weather")])
async def test_forced_tool_call_has_arguments_matching_the_schema(local, choice):
    other = Tool("get_time", "Get the time in a timezone",
                 {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]})
    request = ask("What's the weather in Paris?", max_tokens=60, tools=[WEATHER, other],
                  tool_choice=choice)
    resp = await local.complete(request)
    assert resp.stop_reason == "tool_use"
    [call] = resp.content
    assert isinstance(call, ToolUseBlock) and call.id.startswith("call_")
    assert call.name in ("get_weather", "get_time")
    if call.name == "get_weather":
        assert set(call.input) == {"city", "unit"}
        assert isinstance(call.input["city"], str)
        assert call.input["unit"] in ("celsius", "fahrenheit")
    else:
        assert choice.type == "any" and isinstance(call.input["tz"], str)


async def test_forced_tool_call_streams_as_one_args_delta(local):
    request = ask("What's the weather in Paris?", max_tokens=60, tools=[WEATHER],
                  tool_choice=ToolChoice("any"))
    events = [e async for e in local.stream(request)]
    start, args, stop, end = events[1:]
    assert isinstance(start, BlockStart) and start.block.name == "get_weather"
    assert start.block.input == {} and start.block.id.startswith("call_")
    assert isinstance(args, ToolArgsDelta)
    assert set(json.loads(args.partial_json)) == {"city", "unit"}
    assert stop == BlockStop(0)
    assert end.stop_reason == "tool_use" and end.usage.output_tokens > 0


async def test_images_are_refused(local):
    request = Request(model=MODEL, messages=[Message("user", [
        TextBlock("What is this?"), ImageBlock(media_type="image/png", data="iVBORw0KGgo=")])])
    with pytest.raises(InvalidRequest) as err:
        await local.complete(request)
    assert err.value.status == 400 and err.value.param == "messages"
    assert err.value.message == "model smollm2-135m does not accept images"


async def test_prompt_longer_than_the_context_is_refused(local):
    with pytest.raises(InvalidRequest) as err:
        await local.complete(ask("hello " * 3000, max_tokens=5))
    assert err.value.status == 400 and err.value.param == "messages"
    counts = re.fullmatch(r"prompt is (\d+) tokens; this model's context window is (\d+) tokens",
                          err.value.message)
    assert counts and int(counts[1]) > 3000 and counts[2] == "2048"


async def test_tool_choice_naming_an_unknown_tool_is_refused(local):
    request = ask("Hi", tools=[WEATHER], tool_choice=ToolChoice("tool", name="nope"))
    with pytest.raises(InvalidRequest) as err:
        await local.complete(request)
    assert err.value.status == 400 and err.value.param == "tool_choice"


async def test_max_tokens_is_clipped_to_the_context():
    small = make_provider(n_ctx=256)  # llama.cpp rounds contexts up to a multiple of 256
    await small.start()
    try:
        long_prompt = "Continue this list: " + ", ".join(str(n) for n in range(50))
        resp = await small.complete(ask(long_prompt, max_tokens=500))
    finally:
        await small.aclose()
    assert resp.stop_reason == "max_tokens"
    assert resp.usage.input_tokens > 200
    assert resp.usage.input_tokens + resp.usage.output_tokens == 256


async def test_full_queue_is_refused_at_once_and_frees_up():
    busy = make_provider(queue_size=1)
    await busy.start()
    try:
        long = busy.stream(ask("Write a long story about a dragon.", max_tokens=300))
        async for event in long:  # the first request is on the model thread
            if isinstance(event, TextDelta):
                break
        waiting = asyncio.create_task(busy.complete(ask("Say hi.", max_tokens=3)))
        while busy.queued < 1:
            await asyncio.sleep(0.005)
        with pytest.raises(Overloaded) as err:
            await asyncio.wait_for(busy.complete(ask("Say hi.", max_tokens=3)), 5)
        assert err.value.status == 503 and err.value.retry_after == 1
        assert err.value.message == "local model is busy: 1 requests queued; retry shortly"
        await long.aclose()
        assert (await asyncio.wait_for(waiting, 30)).usage.output_tokens > 0
    finally:
        await busy.aclose()


async def test_closing_a_stream_stops_generation_and_frees_the_model(local):
    usage = Usage()
    stream = local.stream(ask("Write a long story about a dragon.", max_tokens=400), usage=usage)
    deltas = 0
    async for event in stream:
        deltas += isinstance(event, TextDelta)
        if deltas == 3:
            break
    at_close = usage.output_tokens
    await stream.aclose()
    after = await asyncio.wait_for(local.complete(ask("Say hi.", max_tokens=5)), 30)
    assert after.usage.output_tokens > 0
    # Generation stopped within a token or two of the close, and was counted (a delta may
    # carry several tokens: they are paced, stream_interval_ms).
    assert 3 <= at_close <= usage.output_tokens <= at_close + 2 < 400
    assert usage.input_tokens > 0


async def test_cancelled_consumer_task_stops_generation(local):
    usage = Usage()
    first_delta = asyncio.Event()

    async def consume():
        async for event in local.stream(ask("Write a long story about a dragon.",
                                            max_tokens=400), usage=usage):
            if isinstance(event, TextDelta):
                first_delta.set()

    task = asyncio.create_task(consume())
    await first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(local.complete(ask("Say hi.", max_tokens=5)), 30)
    assert 1 <= usage.output_tokens <= 6


# ---- pieces that need no model ---------------------------------------------------------


async def test_text_stream_holds_back_a_possible_stop_sequence():
    text = TextStream(["END"])
    assert text.feed(b"abc E") == ("abc ", None)  # "E" may start "END"
    assert text.feed(b"x") == ("Ex", None)
    assert text.feed(b" EN") == (" ", None)
    assert text.feed(b"D tail") == ("", "END")
    utf8 = TextStream([])
    assert utf8.feed("é".encode()[:1]) == ("", None)  # half a character waits
    assert utf8.feed("é".encode()[1:]) == ("é", None)


async def test_auto_tool_choice_streams_plain_text_and_parses_a_call():
    plain = Shaper(["get_weather"], forced_tool=False)
    assert plain.feed("  ") == []  # undecided until the first visible character
    assert plain.feed("It") == [BlockStart(0, TextBlock("")), TextDelta(0, "  It")]
    assert plain.feed("'s") == [TextDelta(0, "'s")]
    assert plain.finish(Finished("end_turn"), Usage())[0] == BlockStop(0)
    events = Shaper(["get_weather"], forced_tool=False)
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert events.feed(call[:10]) == [] and events.feed(call[10:]) == []
    out = events.finish(Finished("end_turn"), Usage(1, 2))
    assert isinstance(out[0].block, ToolUseBlock) and out[0].block.name == "get_weather"
    assert json.loads(out[1].partial_json) == {"city": "Paris"}
    assert out[-1].stop_reason == "tool_use"
    unknown = Shaper(["get_weather"], forced_tool=False)
    unknown.feed('{"name": "nope", "arguments": {}}')
    out = unknown.finish(Finished("end_turn"), Usage())
    assert out[1] == TextDelta(0, '{"name": "nope", "arguments": {}}')
    assert out[-1].stop_reason == "end_turn"


async def test_tool_calls_and_results_are_written_as_text_turns():
    request = Request(model=MODEL, system="Be brief.", tools=[WEATHER], messages=[
        Message("user", [TextBlock("Weather in Paris?")]),
        Message("assistant", [ToolUseBlock("call_1", "get_weather", {"city": "Paris"})]),
        Message("user", [ToolResultBlock("call_1", [TextBlock("18C, sunny")])]),
    ])
    system, user, assistant, result = chat_messages(request, "auto")
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert '"name": "get_weather"' in system["content"]
    assert assistant == {"role": "assistant",
                         "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'}
    assert result == {"role": "user",
                      "content": "Tool get_weather (call call_1) result:\n18C, sunny"}
    assert chat_messages(request, "none")[0] == {"role": "system", "content": "Be brief."}


# ---- grammar bounds (issue #12) ---------------------------------------------------------


def schema_request(schema: dict) -> Request:
    return ask("JSON", max_tokens=4, response_format=ResponseFormat("json_schema", schema=schema))


@pytest.mark.parametrize("schema, fragment", [
    # 20,000,000 repetitions written out: 500 MB and 2.5 s before the bound.
    ({"type": "string", "minLength": 20_000_000}, "minLength 20000000 is more than"),
    # One nested group per character: llama.cpp's parser refused it (and logged the grammar).
    ({"type": "string", "maxLength": 1500}, "maxLength 1500 is more than"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 5000}, "maxItems 5000"),
    ({"type": "string", "pattern": "^a{1,99999}$"}, "a {n,m} in pattern 99999"),
    ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 900}
                                       for i in range(5)}}, "repetitions in all"),
    ({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(200)}},
     "200 properties"),
    ({"anyOf": [{"type": "integer"}] * 2500}, "2502 objects and arrays"),
    ({"enum": ["x" * 1000] * 300}, "grammar of"),
    # llama-cpp-python's converter looped forever on a "]" or "}" that closes nothing.
    ({"type": "string", "pattern": "^]$"}, "']' that closes nothing"),
    ({"type": "string", "pattern": "^[]]$"}, "']' that closes nothing"),
    ({"type": "string", "pattern": "^ab}$"}, "'}' that closes nothing"),
])
async def test_schemas_whose_grammar_is_too_large_are_refused(local, schema, fragment):
    with pytest.raises(InvalidRequest) as err:
        await local.complete(schema_request(schema))
    assert err.value.status == 400 and err.value.param == "response_format"
    assert fragment in err.value.message, err.value.message


async def test_forced_tool_schemas_are_bounded_too(local):
    tool = Tool("big", None, {"type": "object", "properties": {
        "s": {"type": "string", "minLength": 10**9}}})
    with pytest.raises(InvalidRequest) as err:
        await local.complete(ask("Hi", tools=[tool], tool_choice=ToolChoice("any")))
    assert err.value.param == "tools" and "minLength 1000000000" in err.value.message


async def test_a_schema_at_the_bounds_still_works(local):
    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string", "maxLength": 1000},
        **{f"p{i}": {"type": "integer"} for i in range(63)}}}
    resp = await local.complete(schema_request(schema))
    assert resp.stop_reason == "max_tokens" and text_of(resp).startswith("{")

