"""``providers/http.py`` enforces a deployment's connect, first-token and total timeouts: a
stalled upstream always ends in an ``UpstreamTimeout`` (504), never a hang."""

from __future__ import annotations

import socket
import time
from email.utils import formatdate

import pytest

from modelmart.core.errors import UpstreamError, UpstreamTimeout
from modelmart.core.types import Message, Request, TextBlock
from modelmart.providers.anthropic import AnthropicProvider
from modelmart.providers.base import ProviderConfig
from modelmart.providers.http import _retry_after, new_session
from modelmart.providers.openai import OpenAIProvider
from tests.fakes.faults import Fault, FaultyAnthropic, FaultyOpenAI
from tests.fakes.script import Reply

REQ = Request(model="m", messages=[Message("user", [TextBlock("hi")])], max_tokens=20)


@pytest.fixture(scope="module", params=["openai", "anthropic"])
def upstream(request):
    fake = (FaultyOpenAI() if request.param == "openai" else FaultyAnthropic()).start()
    yield request.param, fake
    fake.stop()


async def provider_for(upstream, **timeouts):
    kind, fake = upstream
    cfg = ProviderConfig(kind=kind, model="m", connect_timeout=timeouts.get("connect", 1),
                         first_token_timeout=timeouts.get("first_token", 0.5),
                         total_timeout=timeouts.get("total", 1.0))
    if kind == "openai":
        cfg.base_url = f"{fake.base_url}/v1"
        return OpenAIProvider(cfg, new_session())
    cfg.base_url = fake.base_url
    return AnthropicProvider(cfg, new_session())


async def drain(provider) -> int:
    n = 0
    async for _ in provider.stream(REQ):
        n += 1
    return n


async def outcome(provider, stream: bool):
    started = time.monotonic()
    try:
        result = await (drain(provider) if stream else provider.complete(REQ))
    except UpstreamError as err:
        result = err
    except UpstreamTimeout as err:
        result = err
    finally:
        await provider.http.close()
    return result, time.monotonic() - started


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", [Fault("stall"), Fault("slow_first_token", seconds=2)],
                         ids=["stall", "slow-first-token"])
async def test_no_first_byte_within_first_token_is_a_504(upstream, fault, stream):
    upstream[1].queue(fault)
    err, took = await outcome(await provider_for(upstream), stream)
    assert isinstance(err, UpstreamTimeout) and err.status == 504
    assert "first_token=0.5s" in err.message and 0.45 < took < 1.5


async def test_a_first_byte_in_time_is_fine(upstream):
    upstream[1].queue(Fault("slow_first_token", seconds=0.05))
    n, took = await outcome(await provider_for(upstream, first_token=2, total=4), stream=True)
    assert not isinstance(n, Exception), f"{n!r} after {took:.2f}s"
    assert n > 3


async def test_a_stream_that_goes_silent_midway_is_a_504(upstream):
    upstream[1].queue(Fault("stall_mid_stream", after_events=3))
    err, took = await outcome(await provider_for(upstream), stream=True)
    assert isinstance(err, UpstreamTimeout) and "middle of the stream" in err.message
    assert took < 1.5


async def test_a_stream_that_trickles_past_the_total_is_a_504(upstream):
    upstream[1].queue(Reply(text="x" * 90, chunk_size=3, event_delay=0.1))
    err, took = await outcome(await provider_for(upstream, total=0.6), stream=True)
    assert isinstance(err, UpstreamTimeout) and "total=0.6s" in err.message
    assert 0.55 < took < 1.5


async def test_a_connection_that_is_never_accepted_is_a_504(upstream):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once its queue is full, connects hang
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        provider = await provider_for(upstream, connect=0.2, first_token=5)
        provider.config.base_url = f"http://127.0.0.1:{port}"
        err, took = await outcome(provider, stream=False)
    finally:
        filler.close()
        listener.close()
    assert isinstance(err, UpstreamTimeout) and "connection within 0.2s" in err.message
    assert took < 1.5


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date():
    assert _retry_after({"retry-after": "7"}) == 7
    assert _retry_after({"retry-after": "7", "retry-after-ms": "1500"}) == 1.5
    assert 9 <= _retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None
