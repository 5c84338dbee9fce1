"""The cheapest-within-gap strategy: the cheapest candidate whose measured gap (upper bound)
is within the margin goes first; with no measurement, catalog order, loudly."""

from __future__ import annotations

import logging
import time

import pytest

from modelmart.catalog.loader import CatalogError, parse_catalog
from modelmart.core.types import Message, Request, TextBlock
from modelmart.evals.quality import measure, refresh
from modelmart.routing import Router
from modelmart.store.base import open_store
from modelmart.store.evals import EvalRecord, EvalRun, EvalStore

# cost per request by deployment: big > mid > small
COSTS = {"big/openai-0": 300, "mid/openai-0": 100, "small/openai-0": 10}


def _catalog(max_gap=0.05):
    dep = {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}
    return parse_catalog({"bundled_model": False, "models": {
        "big": dep, "mid": dep, "small": dep,
        "auto": {"strategy": "cheapest-within-gap", "task": "humaneval", "max_gap": max_gap,
                 "candidates": ["big", "mid", "small"], "price": {"markup": "0.1"}},
    }})


def _router(catalog):
    return Router(catalog, {}, cost_of=lambda dep, i, o: COSTS[dep.name])


def _request():
    return Request(model="auto", messages=[Message("user", [TextBlock("hi")])], max_tokens=10)


def test_catalog_links_candidates_and_checks_them():
    catalog = _catalog()
    auto = catalog.get("auto")
    assert [d.name for d in auto.deployments] == ["big/openai-0", "mid/openai-0", "small/openai-0"]
    assert auto.deployments[0] is catalog.get("big").deployments[0]  # shared, not copied
    assert len(catalog.deployments()) == 3  # one provider per deployment
    with pytest.raises(CatalogError, match="no model 'nope'"):
        parse_catalog({"bundled_model": False, "models": {"a": {
            "strategy": "cheapest-within-gap", "task": "t", "max_gap": 0.1,
            "candidates": ["nope"]}}})
    with pytest.raises(CatalogError, match="max_gap"):
        parse_catalog({"bundled_model": False, "models": {"a": {
            "strategy": "cheapest-within-gap", "task": "t", "candidates": ["a"]}}})


def test_no_measurement_keeps_catalog_order_loudly(caplog):
    catalog = _catalog()
    router = _router(catalog)
    with caplog.at_level(logging.WARNING, logger="modelmart.routing"):
        order = router.plan(catalog.get("auto"), _request())
        router.plan(catalog.get("auto"), _request())
    assert [d.name for d in order] == ["big/openai-0", "mid/openai-0", "small/openai-0"]
    assert sum("no evaluation run of task humaneval" in r.message for r in caplog.records) == 1
    assert router.route_basis(catalog.get("auto")) == "no evaluation of humaneval: catalog order"
    assert router.route_basis(catalog.get("big")) is None


async def test_the_cheapest_model_within_the_gap_goes_first(tmp_path):
    catalog = _catalog(max_gap=0.10)
    router = _router(catalog)
    store = await open_store(f"sqlite:///{tmp_path / 'mm.db'}")
    try:
        evals = EvalStore(store)
        now = time.time()
        run = await evals.create_run(EvalRun(0, "humaneval", "v1", ["big", "mid", "small"], {},
                                             "fp", "done", now, now))
        # per item: big passes 90%, mid 88% (within the gap), small 40% (far behind)
        rules = {"big": lambda i: i % 10 != 0, "mid": lambda i: i % 25 not in (0, 1, 2),
                 "small": lambda i: i % 5 in (0, 1)}
        await evals.insert_records([
            EvalRecord(run.id, "humaneval", "v1", model, f"HumanEval/{i}", 0, "h",
                       score=float(rule(i)), created_at=now)
            for model, rule in rules.items() for i in range(400)])
        await refresh(router.quality, store, catalog)
        measured = await measure(store, "humaneval")
    finally:
        await store.close()
    assert measured.gap_high["mid"] <= 0.10 < measured.gap_high["small"]
    order = [d.name for d in router.plan(catalog.get("auto"), _request())]
    assert order == ["mid/openai-0", "big/openai-0", "small/openai-0"]
    assert router.route_basis(catalog.get("auto")) == f"eval run {run.id} (humaneval@v1)"


async def test_the_route_carries_its_basis(fake_openai):
    """Through the router to a fake upstream: the answer's route names its basis."""
    from tests.fakes.script import Reply

    from modelmart.providers.http import new_session
    from modelmart.providers.registry import provider_class

    dep = {"provider": "openai", "base_url": f"{fake_openai.base_url}/v1",
           "api_key": "sk-upstream-test"}
    catalog = parse_catalog({"bundled_model": False, "models": {
        "one": dep, "auto": {"strategy": "cheapest-within-gap", "task": "humaneval",
                             "max_gap": 0.1, "candidates": ["one"]}}})
    http = new_session()
    providers = {d.name: provider_class(d.config.kind)(d.config, http)
                 for d in catalog.deployments()}
    router = Router(catalog, providers)
    fake_openai.queue(Reply(text="hi"))
    try:
        _, routed = await router.complete(_request())
        _, plain = await router.complete(Request(model="one", messages=_request().messages))
    finally:
        await http.close()
    assert routed.basis == "no evaluation of humaneval: catalog order"
    assert plain.basis is None
