"""End to end: the real gateway in front of fault-injecting fakes, the official SDKs as clients
(no client retries). Every fault ends in an answer from a healthy deployment or a clear error
within the deadline; the headers say who answered after how many attempts."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from tests.fakes.faults import Fault, FaultyAnthropic, FaultyOpenAI
from tests.fakes.script import Reply
from tests.harness import GatewayServer

TIMEOUTS = {"connect": 0.5, "first_token": 0.5, "total": 3}
RETRIES = {"attempts": 2, "max_attempts": 6, "backoff": {"base": 0.01, "max": 0.05}, "deadline": 5}
PRICE = {"markup": "0.5"}
HI = [{"role": "user", "content": "hi"}]


def _openai_dep(fake, name: str, key: str = "sk-any") -> dict:
    return {"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake.base_url}/v1",
            "api_key": key, "name": name, "timeouts": TIMEOUTS}


def _anthropic_dep(fake, name: str) -> dict:
    return {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": fake.base_url,
            "api_key": "sk-any", "name": name, "timeouts": TIMEOUTS}


def _model(*deployments, **settings) -> dict:
    return {"price": PRICE, "retries": RETRIES, "deployments": list(deployments), **settings}


@pytest.fixture(scope="module")
def upstreams():
    fakes = {"a": FaultyOpenAI(), "b": FaultyOpenAI(), "c": FaultyAnthropic(),
             "locked": FaultyOpenAI(api_key="sk-right")}
    for fake in fakes.values():
        fake.start()
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture(scope="module")
def gateway(upstreams):
    a, b, c, locked = (upstreams[k] for k in ("a", "b", "c", "locked"))
    catalog = {"bundled_model": False, "models": {
        "resilient": _model(_openai_dep(a, "primary"), _openai_dep(b, "secondary"),
                            _anthropic_dep(c, "tertiary")),
        "doomed": _model(_openai_dep(a, "doomed-a"), _openai_dep(b, "doomed-b"),
                         retries={**RETRIES, "attempts": 1}),
        "short-deadline": _model(_openai_dep(a, "short"),
                                 retries={**RETRIES, "attempts": 3, "deadline": 0.8}),
        "guarded": _model(_openai_dep(locked, "wrong-key", key="sk-wrong"),
                          _openai_dep(b, "good-key")),
        "locked-out": _model(_openai_dep(locked, "only-wrong-key", key="sk-wrong")),
    }}
    server = GatewayServer(catalog).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(upstreams, gateway):
    """Empty scripts and a clean health board: each test starts from healthy deployments."""
    for fake in upstreams.values():
        fake.replies.clear()
        fake.received.clear()
        fake.client_disconnected.clear()
    gateway.app.router.board.reset()
    yield


@pytest.fixture
def oa(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0,
                         timeout=20)


@pytest.fixture
def an(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0,
                               timeout=20)


def route(headers) -> tuple[str, int]:
    return headers["x-modelmart-deployment"], int(headers["x-modelmart-attempts"])


FAULTS = [
    Fault("reset"), Fault("stall"), Fault("malformed_json"),
    Fault("slow_first_token", seconds=0.8),
    Reply(error_status=429), Reply(error_status=500), Reply(error_status=503),
    Reply(error_status=529),
]
FAULT_IDS = ["reset", "stall", "malformed", "slow-first-token", "429", "500", "503", "529"]


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_a_failing_primary_is_retried_then_the_secondary_answers(upstreams, oa, fault):
    upstreams["a"].queue(fault, fault)
    started = time.monotonic()
    raw = oa.chat.completions.with_raw_response.create(model="resilient", messages=HI)
    assert route(raw.headers) == ("secondary", 3)
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert time.monotonic() - started < 4  # two stalls of first_token=0.5s, no hang
    assert len(upstreams["a"].received) == 2


@pytest.mark.parametrize("fault", [Fault("stall"), Fault("slow_first_token", seconds=0.8),
                                   Fault("reset"), Fault("malformed_json"),
                                   Reply(error_status=529)],
                         ids=["stall", "slow-first-token", "reset", "malformed", "529"])
def test_a_stream_falls_back_until_its_first_byte(upstreams, oa, fault):
    upstreams["a"].queue(fault, fault)
    with oa.chat.completions.with_streaming_response.create(
            model="resilient", messages=HI, stream=True) as resp:
        assert route(resp.headers) == ("secondary", 3)
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "echo: hi"


def test_anthropic_clients_get_the_same_resilience(upstreams, an):
    upstreams["a"].queue(Fault("stall"), Reply(error_status=529))
    upstreams["b"].queue(Fault("reset"), Reply(error_status=503))
    raw = an.messages.with_raw_response.create(model="resilient", max_tokens=20, messages=HI)
    assert route(raw.headers) == ("tertiary", 5)
    assert raw.parse().content[0].text == "echo: hi"
    upstreams["a"].queue(Fault("slow_first_token", seconds=0.8))
    with an.messages.with_streaming_response.create(
            model="resilient", max_tokens=20, messages=HI, stream=True) as resp:
        assert route(resp.headers) == ("primary", 2)
        events = list(resp.parse())
    assert events[-1].type == "message_stop"


def test_a_short_retry_after_is_waited_for_on_the_same_deployment(upstreams, oa):
    upstreams["a"].queue(Reply(error_status=429, retry_after=0.3))
    started = time.monotonic()
    raw = oa.chat.completions.with_raw_response.create(model="resilient", messages=HI)
    assert route(raw.headers) == ("primary", 2)
    assert time.monotonic() - started >= 0.3


def test_a_retry_after_beyond_the_deadline_moves_on_at_once(upstreams, oa):
    upstreams["a"].queue(Reply(error_status=429, retry_after=60))
    started = time.monotonic()
    raw = oa.chat.completions.with_raw_response.create(model="resilient", messages=HI)
    assert route(raw.headers) == ("secondary", 2)
    assert time.monotonic() - started < 2  # not the 60 s asked for


def test_client_errors_are_not_retried(upstreams, oa):
    upstreams["a"].queue(Reply(error_status=400, error_message="temperature is too hot"))
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="resilient", messages=HI)
    assert "too hot" in str(e.value)
    assert len(upstreams["a"].received) == 1 and upstreams["b"].received == []


def test_when_every_deployment_stalls_the_client_gets_a_504_not_a_hang(upstreams, oa):
    upstreams["a"].queue(Fault("stall"))
    upstreams["b"].queue(Fault("stall"))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="doomed", messages=HI)
    assert e.value.status_code == 504 and "first_token=0.5s" in str(e.value)
    assert time.monotonic() - started < 4
    assert upstreams["a"].client_disconnected.wait(1)  # the stalled upstream was hung up on


def test_the_deadline_bounds_the_whole_request(upstreams, oa):
    upstreams["a"].queue(Fault("stall"), Fault("stall"), Fault("stall"))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="short-deadline", messages=HI)
    assert e.value.status_code == 504 and "deadline of 0.8s" in str(e.value)
    assert time.monotonic() - started < 2.5


def test_the_deadline_bounds_a_streams_start_not_its_length(upstreams, oa):
    upstreams["a"].queue(Fault("stall"), Fault("stall"), Fault("stall"))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="short-deadline", messages=HI, stream=True)
    assert e.value.status_code == 504 and "deadline of 0.8s" in str(e.value)
    assert time.monotonic() - started < 2.5
    # A stream that starts in time may run past the deadline: it bounds the first byte.
    upstreams["a"].queue(Fault("slow_stream", seconds=0.2))
    started = time.monotonic()
    chunks = list(oa.chat.completions.create(model="short-deadline", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == "a reply from a faulty upstream"
    assert time.monotonic() - started > 0.8


def test_rejected_gateway_credentials_fall_back_and_never_look_like_the_clients_fault(
        gateway, upstreams, oa):
    raw = oa.chat.completions.with_raw_response.create(model="guarded", messages=HI)
    assert route(raw.headers) == ("good-key", 2)
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="locked-out", messages=HI)
    assert e.value.status_code == 502  # not 401: the client's own key is fine
    assert "rejected the gateway's credentials" in str(e.value)
    health = gateway.app.router.health()
    assert health["wrong-key"]["state"] == "credentials_rejected"
    assert health["only-wrong-key"]["state"] == "credentials_rejected"


def test_repeated_failures_cool_the_primary_down(gateway, upstreams, oa):
    upstreams["a"].queue(*[Reply(error_status=500)] * 4)
    for _ in range(2):
        raw = oa.chat.completions.with_raw_response.create(model="resilient", messages=HI)
        assert route(raw.headers) == ("secondary", 3)
    raw = oa.chat.completions.with_raw_response.create(model="resilient", messages=HI)
    assert route(raw.headers) == ("secondary", 1)  # primary skipped while cooling
    health = gateway.app.router.health()["primary"]
    assert health["state"] == "cooling" and health["consecutive_failures"] == 4


@pytest.mark.parametrize("fault", [Fault("truncated_stream", after_events=3),
                                   Fault("stall_mid_stream", after_events=3)],
                         ids=["truncated", "stalled"])
def test_a_failure_after_the_first_byte_is_the_dialects_error_event(upstreams, oa, an, fault):
    upstreams["a"].queue(fault)
    started = time.monotonic()
    with pytest.raises(openai.APIError):
        for _ in oa.chat.completions.create(model="resilient", messages=HI, stream=True):
            pass
    upstreams["a"].queue(fault)
    with pytest.raises(anthropic.APIError):
        with an.messages.stream(model="resilient", max_tokens=20, messages=HI) as stream:
            for _ in stream:
                pass
    assert time.monotonic() - started < 5
    assert upstreams["b"].received == []  # no fallback once the client had bytes
