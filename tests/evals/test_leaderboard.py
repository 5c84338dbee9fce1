"""Cost next to quality, the leaderboard's renderings, reported scores kept apart."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest

from modelmart.evals.leaderboard import leaderboard, load_reported, render
from modelmart.evals.pareto import cheaper_alternatives, pareto_front
from modelmart.evals.report import build_report
from modelmart.store.base import open_store
from modelmart.store.evals import EvalRecord, EvalRun, EvalStore


def test_pareto_front_and_cheaper_alternatives():
    points = [("dear", 0.90, 1.0), ("cheap-tied", 0.88, 0.1), ("cheapest-bad", 0.40, 0.01),
              ("mid-worse", 0.70, 0.5)]
    assert pareto_front(points) == {"dear", "cheap-tied", "cheapest-bad"}
    tied = {("dear", "cheap-tied"): {"diff": 0.02, "low": -0.03, "high": 0.07}}
    alts = cheaper_alternatives(points, tied)
    assert alts["dear"] == "cheap-tied"  # as good within the interval, and cheaper
    assert alts["mid-worse"] == "cheap-tied"  # beats it and costs less
    assert "cheapest-bad" not in alts and "cheap-tied" not in alts


async def test_leaderboard_and_report_from_records(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path / 'mm.db'}")
    try:
        evals = EvalStore(store)
        now = time.time()
        run = await evals.create_run(EvalRun(0, "qa", "v1", ["dear", "cheap", "bad"], {}, "fp",
                                             "done", now, now, wall_s=60))
        rule = {"dear": lambda i: i % 10 != 0, "cheap": lambda i: i % 10 != 1 and i % 50 != 2,
                "bad": lambda i: i % 2 == 0}
        price = {"dear": 10**9, "cheap": 10**7, "bad": 10**6}
        await evals.insert_records([
            EvalRecord(run.id, "qa", "v1", m, f"q{i}", 0, "h", score=float(f(i)),
                       price_pico=price[m], cost_pico=price[m] // 2, latency_ms=100.0,
                       created_at=now) for m, f in rule.items() for i in range(100)])
        board = await leaderboard(evals)
        files = await build_report(evals, run.id)
    finally:
        await store.close()
    models = {m["model"]: m for m in board[0]["models"]}
    assert models["dear"]["cheaper_alternative"] == "cheap"
    assert models["bad"]["tied"] is False and models["cheap"]["tied"] is True
    assert models["dear"]["usd_per_item"] == 0.001
    table = render(board, "table")
    assert table.splitlines()[1].startswith("model") and "dear" in table
    assert json.loads(render(board, "json"))[0]["task"] == "qa"
    for name in ("scores.svg", "frontier_gap.svg", "quality_cost.svg"):
        ET.fromstring(files[name])  # well-formed SVG
    assert "**cheap** is cheaper and beats or ties it" in files["summary.md"]
    assert "wall time **1.0 min**" in files["summary.md"]


def test_reported_scores_need_a_source(tmp_path):
    path = tmp_path / "reported.yaml"
    path.write_text("- {task: qa, model: x, score: 0.9}\n")
    with pytest.raises(ValueError, match="source"):
        load_reported(str(path))
    path.write_text("- {task: qa, model: x, score: 0.9, source: 'vendor blog, 2026-01'}\n")
    assert load_reported(str(path))[0]["source"] == "vendor blog, 2026-01"


async def test_a_judge_rating_of_1_is_not_mistaken_for_a_pass(tmp_path):
    from modelmart.evals.results import run_result

    store = await open_store(f"sqlite:///{tmp_path / 'mm.db'}")
    try:
        evals = EvalStore(store)
        now = time.time()
        run = await evals.create_run(EvalRun(0, "mt-bench", "v1", ["m"], {"kind": "scale"},
                                             "fp", "done", now, now))
        await evals.insert_records([EvalRecord(run.id, "mt-bench", "v1", "m", f"{i}", 0, "h",
                                               score=1.0, created_at=now) for i in range(5)])
        result = await run_result(evals, run)
        board = await leaderboard(evals)
    finally:
        await store.close()
    assert not result.binary and result.models[0].method == "bootstrap"
    assert board[0]["binary"] is False


def test_pass_at_k_from_epochs():
    from modelmart.evals.results import analyse

    # 3 items x 4 epochs: passes 4, 1 and 0 times
    passes = {"a": [1, 1, 1, 1], "b": [1, 0, 0, 0], "c": [0, 0, 0, 0]}
    records = [EvalRecord(1, "humaneval", "v", "m", item, epoch, "h", score=float(s))
               for item, seq in passes.items() for epoch, s in enumerate(seq)]
    result = analyse("humaneval", "v", records, binary=True)
    m = result.models[0]
    assert m.pass_at["pass@1"] == pytest.approx((1 + 0.25 + 0) / 3)
    assert "pass@5" not in m.pass_at  # needs 5 samples per item
    assert m.items == 3 and m.method == "bootstrap"  # epochs averaged: not pass/fail
