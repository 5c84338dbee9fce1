"""The retry policy: what is retried, how long the router waits, when it moves on."""

from __future__ import annotations

import random

import pytest

from modelmart.catalog import RetryPolicy
from modelmart.core.errors import (
    InvalidRequest, NotFound, Overloaded, RateLimited, UpstreamError, UpstreamTimeout,
    error_for_status,
)
from modelmart.routing.retry import backoff, retry_delay

from .helpers import deployment, make_router, request

FAST = {"backoff": {"base": 0.1, "max": 0.4}}


def test_backoff_is_full_jitter_below_an_exponential_ceiling():
    policy, rng = RetryPolicy(backoff_base=0.5, backoff_max=3.0), random.Random(1)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = [backoff(policy, retry, rng) for _ in range(500)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.8 * ceiling and min(waits) < 0.2 * ceiling  # spread, not fixed


def test_retry_after_is_a_floor_unless_it_outlasts_the_deadline():
    policy, rng = RetryPolicy(backoff_base=0.1, backoff_max=0.1), random.Random(1)
    assert retry_delay(policy, RateLimited("slow down", retry_after=2.5), 1, 10, rng) == 2.5
    assert retry_delay(policy, RateLimited("slow down", retry_after=30), 1, 10, rng) is None
    assert 0 <= retry_delay(policy, UpstreamError("boom"), 1, 10, rng) <= 0.1
    assert retry_delay(policy, UpstreamError("boom"), 1, 0.0, rng) is None


@pytest.mark.parametrize("err", [
    UpstreamError("connection reset"), UpstreamTimeout("stalled"), RateLimited("429"),
    error_for_status(500, "x"), error_for_status(503, "x"), Overloaded("529", status=529),
])
async def test_retryable_failures_are_retried_on_the_same_deployment(err):
    router, providers, clock = make_router({"retries": FAST, "deployments": [
        deployment("a"), deployment("b")]})
    providers["a"].script = [err]
    resp, routed = await router.complete(request())
    assert routed.deployment.name == "a" and routed.attempts == 2
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.1
    assert providers["b"].calls == 0


@pytest.mark.parametrize("err", [InvalidRequest("bad field"), NotFound("no such model"),
                                 error_for_status(413, "too big"), error_for_status(422, "x")])
async def test_client_errors_are_never_retried(err):
    router, providers, clock = make_router({"deployments": [deployment("a"), deployment("b")]})
    providers["a"].script = [err]
    with pytest.raises(type(err)) as e:
        await router.complete(request())
    assert e.value.status == err.status and e.value.attempts == 1
    assert providers["a"].calls == 1 and providers["b"].calls == 0 and clock.sleeps == []


async def test_retry_after_is_honoured_before_retrying():
    router, providers, clock = make_router({"retries": FAST, "deployments": [deployment("a")]})
    providers["a"].script = [RateLimited("slow down", retry_after=3)]
    _, routed = await router.complete(request())
    assert routed.attempts == 2 and clock.sleeps == [3]


async def test_retry_after_beyond_the_deadline_moves_on_at_once():
    router, providers, clock = make_router({"retries": {"deadline": 10}, "deployments": [
        deployment("a"), deployment("b")]})
    providers["a"].script = [RateLimited("slow down", retry_after=60)]
    _, routed = await router.complete(request())
    assert routed.deployment.name == "b" and routed.attempts == 2 and clock.sleeps == []


async def test_spent_retries_fall_back_to_the_next_deployment():
    router, providers, _ = make_router({"retries": {"attempts": 3, **FAST}, "deployments": [
        deployment("a"), deployment("b")]})
    providers["a"].script = [UpstreamError("x")] * 3
    _, routed = await router.complete(request())
    assert routed.deployment.name == "b" and routed.attempts == 4
    assert providers["a"].calls == 3


async def test_the_overall_attempt_limit_ends_the_request_with_the_last_upstream_error():
    router, providers, _ = make_router({"retries": {"attempts": 2, "max_attempts": 3, **FAST},
                                        "deployments": [deployment("a"), deployment("b")]})
    providers["a"].script = [error_for_status(503, "first"), error_for_status(500, "second")]
    providers["b"].script = [Overloaded("overloaded", status=529), "never reached"]
    with pytest.raises(Overloaded) as e:
        await router.complete(request())
    assert e.value.status == 529 and e.value.attempts == 3
    assert providers["b"].calls == 1


async def test_the_deadline_stops_retrying():
    router, providers, _ = make_router({"retries": {"attempts": 5, "deadline": 2.0, **FAST},
                                        "deployments": [deployment("a")]})

    async def slow_then_fail(req):  # 1.5 s of fake time, then a timeout
        providers["a"].clock.now += 1.5
        raise UpstreamTimeout("stalled")

    providers["a"].complete = slow_then_fail
    with pytest.raises(UpstreamTimeout) as e:
        await router.complete(request())
    assert e.value.attempts == 2  # the third attempt would start after the deadline
