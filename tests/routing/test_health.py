"""Deployment health: cooldown, the half-open probe, rejected credentials, stream outcomes."""

from __future__ import annotations

import logging

import pytest

from modelmart.core.errors import (
    AuthenticationFailed, PermissionDenied, UpstreamError, UpstreamTimeout,
)

from .helpers import Slow, deployment, make_router, request

ONE_TRY = {"attempts": 1, "backoff": {"base": 0, "max": 0}}


def two_deployments(**model):
    return make_router({"retries": ONE_TRY, "cooldown": {"failures": 3, "seconds": 30},
                        "deployments": [deployment("a"), deployment("b")], **model})


async def fail_a(router, providers, times: int) -> None:
    providers["a"].script = [UpstreamError("boom")] * times
    for _ in range(times):
        _, routed = await router.complete(request())
        assert routed.deployment.name == "b"


async def test_consecutive_failures_cool_a_deployment_down():
    router, providers, clock = two_deployments()
    await fail_a(router, providers, 3)
    state = router.health()["a"]
    assert state["state"] == "cooling" and state["consecutive_failures"] == 3
    assert state["cooldown_remaining_s"] == 30 and state["last_error"] == "502: boom"
    calls = providers["a"].calls
    _, routed = await router.complete(request())
    assert routed.deployment.name == "b" and routed.attempts == 1  # a was skipped, not tried
    assert providers["a"].calls == calls


async def test_a_success_before_the_threshold_resets_the_count():
    router, providers, _ = two_deployments()
    await fail_a(router, providers, 2)
    await router.complete(request())  # a answers
    await fail_a(router, providers, 2)
    assert router.health()["a"]["state"] == "healthy"


async def test_after_the_cooldown_one_probe_goes_through_and_its_success_restores_it():
    router, providers, clock = two_deployments()
    await fail_a(router, providers, 3)
    clock.now += 31
    assert router.health()["a"]["state"] == "half_open"
    plan = router.plan(router.catalog.get("m"), request())
    router.board.begin(plan[0])  # a probe is in flight: other requests keep skipping a
    assert [d.name for d in router.plan(router.catalog.get("m"), request())] == ["b"]
    router.board.release(plan[0])
    _, routed = await router.complete(request())
    assert routed.deployment.name == "a"
    assert router.health()["a"]["state"] == "healthy"


async def test_a_failed_probe_cools_it_down_again():
    router, providers, clock = two_deployments()
    await fail_a(router, providers, 3)
    clock.now += 31
    providers["a"].script = [UpstreamTimeout("still down")]
    _, routed = await router.complete(request())
    assert routed.deployment.name == "b" and routed.attempts == 2
    assert router.health()["a"]["state"] == "cooling"
    assert router.health()["a"]["cooldown_remaining_s"] == 30


async def test_when_every_deployment_is_cooling_the_least_recently_failed_is_tried():
    router, providers, clock = make_router({"retries": ONE_TRY, "deployments": [
        deployment("a"), deployment("b")]})
    providers["a"].script = [UpstreamError("a down")] * 3
    providers["b"].script = [UpstreamError("b down")] * 3
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await router.complete(request())
        clock.now += 1
    # b failed last, so a (failed longest ago) gets the request rather than a refusal.
    assert {s["state"] for s in router.health().values()} == {"cooling"}
    _, routed = await router.complete(request())
    assert routed.deployment.name == "a"


@pytest.mark.parametrize("err", [AuthenticationFailed("invalid x-api-key"),
                                 PermissionDenied("key lacks access")])
async def test_rejected_credentials_move_on_and_mark_the_deployment(err, caplog):
    router, providers, _ = two_deployments()
    providers["a"].script = [err]
    with caplog.at_level(logging.WARNING, logger="modelmart.routing"):
        _, routed = await router.complete(request())
    assert routed.deployment.name == "b" and routed.attempts == 2
    state = router.health()["a"]
    assert state["state"] == "credentials_rejected"
    warnings = [r for r in caplog.records if "credentials" in r.getMessage()]
    assert len(warnings) == 1 and "a" in warnings[0].getMessage()


async def test_rejected_credentials_are_logged_once_and_kept_until_a_success(caplog):
    router, providers, clock = make_router({"retries": ONE_TRY, "cooldown": {"seconds": 5},
                                            "deployments": [deployment("a")]})
    providers["a"].script = [AuthenticationFailed("bad key")] * 3
    with caplog.at_level(logging.WARNING, logger="modelmart.routing"):
        for _ in range(3):
            with pytest.raises(UpstreamError) as e:
                await router.complete(request())
            clock.now += 10
    # The client hears a 502 about the gateway's credentials, never the upstream's 401.
    assert e.value.status == 502 and "rejected the gateway's credentials" in e.value.message
    assert "bad key" not in e.value.message
    assert len([r for r in caplog.records if "credentials" in r.getMessage()]) == 1
    assert router.health()["a"]["state"] == "credentials_rejected"
    await router.complete(request())
    assert router.health()["a"]["state"] == "healthy"


async def test_health_reports_every_deployment():
    router, providers, _ = two_deployments()
    providers["a"].script = [Slow(0.2)]
    await router.complete(request())
    report = router.health()
    assert set(report) == {"a", "b"}
    assert report["a"] == {
        "model": "m", "deployment": "a", "state": "healthy", "consecutive_failures": 0,
        "latency_ms": 200.0, "ttft_ms": None, "requests": 1, "failures": 0,
        "last_error": None, "cooldown_remaining_s": 0.0,
    }
    assert report["b"]["requests"] == 0


async def test_a_stream_records_ttft_then_latency_when_it_ends():
    router, providers, clock = two_deployments()
    providers["a"].script = [Slow(0.3)]
    events, first, routed = await router.stream(request(stream=True))
    assert routed.ttft_ms == pytest.approx(300) and routed.latency_ms is None
    clock.now += 0.2
    assert len([e async for e in events]) == 4
    assert routed.latency_ms == pytest.approx(500)
    state = router.health()["a"]
    assert state["ttft_ms"] == 300.0 and state["latency_ms"] == 500.0


async def test_a_stream_failing_after_its_first_event_counts_as_a_failure():
    router, providers, _ = two_deployments()
    providers["a"].mid_stream_error = UpstreamError("cut")
    events, first, routed = await router.stream(request(stream=True))
    with pytest.raises(UpstreamError):
        async for _ in events:
            pass
    assert router.health()["a"]["consecutive_failures"] == 1
    assert routed.latency_ms is not None


async def test_a_stream_failing_before_its_first_event_falls_back():
    router, providers, _ = two_deployments()
    providers["a"].script = [UpstreamTimeout("no first token")]
    events, first, routed = await router.stream(request(stream=True))
    assert routed.deployment.name == "b" and routed.attempts == 2
    await events.aclose()
    assert router.health()["b"]["failures"] == 0  # closing unread says nothing


async def test_closing_a_stream_unread_closes_the_upstream_and_frees_the_probe():
    router, providers, clock = two_deployments()
    await fail_a(router, providers, 3)
    clock.now += 31  # a is half-open: this stream is its probe
    events, first, routed = await router.stream(request(stream=True))
    assert routed.deployment.name == "a"
    assert [d.name for d in router.plan(router.catalog.get("m"), request())] == ["b"]
    await events.aclose()  # the client left after the first event
    assert providers["a"].closed == 1
    assert router.health()["a"]["state"] == "half_open"  # no verdict, but the slot is free
    assert [d.name for d in router.plan(router.catalog.get("m"), request())] == ["a", "b"]


async def test_what_the_board_keeps_and_logs_of_an_error_is_scrubbed(caplog):
    # An error that did not pass through providers/http.py (a provider of another kind):
    # the board scrubs with the deployment's own credentials and the usual shapes anyway.
    router, providers, _ = two_deployments()
    router.catalog.get("m").deployments[0].config.api_key = "plain-configured-secret"
    failure = UpstreamError("echo: key plain-configured-secret, Bearer sk-abcdefghijkl0123")
    failure.detail = "http://10.0.0.5:8000/v1/chat/completions: ConnectionRefusedError()"
    providers["a"].script = [failure] * 3 + [AuthenticationFailed("x-api-key: sk-ant-zz99")]
    with caplog.at_level(logging.WARNING, logger="modelmart.routing"):
        for _ in range(3):  # cooled down: logged with the wire detail
            await router.complete(request())
        router.board.reset()
        await router.complete(request())  # the credentials-rejected warning
    last = router.health()["a"]["last_error"]
    assert "[redacted]" in last and "sk-ant-zz99" not in last
    assert "10.0.0.5:8000" in caplog.text  # the wire detail, for the operator
    for secret in ("plain-configured-secret", "sk-abcdefghijkl0123", "sk-ant-zz99"):
        assert secret not in caplog.text
