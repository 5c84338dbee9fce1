"""Strategies and capability checks: which deployments are tried, in which order."""

from __future__ import annotations

from collections import Counter

import pytest

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import ImageBlock, Message, ResponseFormat, TextBlock, Tool, ToolChoice
from modelmart.routing.capability import estimate_input_tokens

from .helpers import deployment, make_router, request


def names(deps) -> list[str]:
    return [d.name for d in deps]


def plan(router, req=None) -> list[str]:
    req = req or request()
    return names(router.plan(router.catalog.get("m"), req))


def test_fallback_keeps_catalog_order():
    router, _, _ = make_router({"deployments": [deployment("a"), deployment("b"), deployment("c")]})
    assert plan(router) == ["a", "b", "c"]


def test_weighted_split_follows_weights_within_tolerance():
    router, _, _ = make_router({"strategy": "weighted", "deployments": [
        deployment("a", weight=3), deployment("b", weight=1), deployment("standby", weight=0)]})
    firsts = Counter(plan(router)[0] for _ in range(2000))
    assert abs(firsts["a"] / 2000 - 0.75) < 0.04
    assert firsts["standby"] == 0
    # The ones not drawn stay as fallbacks, in catalog order.
    assert sorted(plan(router)) == ["a", "b", "standby"]
    assert plan(router)[-1] == "standby"


def test_least_latency_measures_unknown_first_then_moves_away_from_a_slowed_one():
    router, _, _ = make_router({"strategy": "least-latency", "deployments": [
        deployment("a"), deployment("b"), deployment("c")]})
    board, deps = router.board, {d.name: d for d in router.catalog.deployments()}
    board.succeeded(deps["a"], latency_ms=100)
    assert plan(router) == ["b", "c", "a"]  # b and c are unmeasured: they go first
    board.succeeded(deps["b"], latency_ms=200)
    board.succeeded(deps["c"], latency_ms=300)
    assert plan(router) == ["a", "b", "c"]
    for _ in range(4):  # a slows down; a few slow replies are enough to move away from it
        board.succeeded(deps["a"], latency_ms=900)
    assert plan(router)[0] == "b"


def test_least_latency_orders_streams_by_time_to_first_token():
    router, _, _ = make_router({"strategy": "least-latency", "deployments": [
        deployment("a"), deployment("b")]})
    a, b = router.catalog.deployments()
    router.board.succeeded(a, latency_ms=500)  # a: fast overall, slow to start
    router.board.first_event(a, 400)
    router.board.succeeded(b, latency_ms=900)  # b: long replies, quick first token
    router.board.first_event(b, 50)
    assert plan(router, request(stream=True)) == ["b", "a"]
    assert plan(router, request(stream=False)) == ["a", "b"]


def test_lowest_cost_picks_the_cheapest_capable_deployment():
    prices = {"cheap-no-tools": 1, "mid": 50, "dear": 90, "unpriced": None}
    seen = []

    def cost_of(dep, input_tokens, output_tokens):
        seen.append((input_tokens, output_tokens))
        return prices[dep.name] * (input_tokens + output_tokens) if prices[dep.name] else None

    router, _, _ = make_router({"strategy": "lowest-cost", "deployments": [
        deployment("unpriced"), deployment("dear"), deployment("mid"),
        deployment("cheap-no-tools", capabilities={"tools": False})]}, cost_of=cost_of)
    assert plan(router) == ["cheap-no-tools", "mid", "dear", "unpriced"]
    with_tools = request("x" * 400, max_tokens=50, tools=[Tool("lookup")])
    assert plan(router, with_tools) == ["mid", "dear", "unpriced"]
    assert seen[-1] == (estimate_input_tokens(with_tools), 50)


def test_lowest_cost_without_prices_keeps_catalog_order():
    router, _, _ = make_router({"strategy": "lowest-cost", "deployments": [
        deployment("a"), deployment("b")]})
    assert plan(router) == ["a", "b"]


@pytest.mark.parametrize("req, skipped", [
    (request(tools=[Tool("t")]), "no-tools"),
    (request(tools=[Tool("t")], tool_choice=ToolChoice("none")), None),
    (request(response_format=ResponseFormat("json_schema", schema={"type": "object"})), "no-schema"),
    (request(messages=[Message("user", [ImageBlock("image/png", data="aGk=")])]), "no-images"),
    (request("w" * 4004), "small-context"),  # about 1001 tokens > 1000
    (request("w" * 3996), None),
])
def test_deployments_lacking_what_the_request_needs_are_skipped(req, skipped):
    router, _, _ = make_router({"deployments": [
        deployment("no-tools", capabilities={"tools": False}),
        deployment("no-schema", capabilities={"json_schema": False}),
        deployment("no-images", capabilities={"images": False}),
        deployment("small-context", capabilities={"context_window": 1000}),
        deployment("all"),
    ]})
    req.model = "m"
    expected = [n for n in ["no-tools", "no-schema", "no-images", "small-context", "all"]
                if n != skipped]
    assert plan(router, req) == expected


def test_no_capable_deployment_is_a_400_that_says_what_is_missing():
    router, _, _ = make_router({"deployments": [
        deployment("a", capabilities={"images": False, "context_window": 10})]})
    with pytest.raises(InvalidRequest) as e:
        plan(router, request("long " * 100))
    assert e.value.status == 400 and "context window 10" in e.value.message
    with pytest.raises(InvalidRequest, match="images"):
        plan(router, request(messages=[Message("user", [ImageBlock("image/png", data="aGk=")])]))


def test_token_estimate_is_chars_over_four_with_a_flat_cost_per_image():
    req = request(system="s" * 40, messages=[
        Message("user", [TextBlock("t" * 400), ImageBlock("image/png", data="x" * 100_000)])])
    assert estimate_input_tokens(req) == 110 + 1000


def test_weighted_draw_is_reproducible_with_a_seeded_rng():
    spec = {"strategy": "weighted", "deployments": [deployment("a"), deployment("b")]}
    r1, _, _ = make_router(spec, seed=3)
    r2, _, _ = make_router(spec, seed=3)
    assert [plan(r1)[0] for _ in range(20)] == [plan(r2)[0] for _ in range(20)]
