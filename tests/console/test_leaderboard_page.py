"""The console's leaderboard page reads the evaluation records in the store (issue #13):
per task, each model's score with its interval, its gap to the frontier, the frontier flag."""

from __future__ import annotations

import asyncio
import time

from modelmart.store.base import open_store
from modelmart.store.evals import EvalRecord, EvalRun, EvalStore
from tests.console.test_console_auth import sign_in


async def _seed(url: str) -> None:
    store = await open_store(url)
    try:
        evals, now = EvalStore(store), time.time()
        run = await evals.create_run(EvalRun(0, "arith", "v1", ["sharp", "dull"], {}, "fp",
                                             "done", now, now, wall_s=3.0))
        await evals.insert_records([
            EvalRecord(run.id, "arith", "v1", model, f"q{i}", 0, f"h{i}",
                       score=float(model == "sharp" or i % 4 == 0), price_pico=10**6,
                       latency_ms=5.0, created_at=now)
            for model in ("sharp", "dull") for i in range(40)])
    finally:
        await store.close()


def test_the_leaderboard_shows_scores_gaps_and_the_frontier(gw):
    asyncio.run(_seed(gw.database_url))
    page = sign_in(gw, gw.admin_key).get("/console/leaderboard")
    assert page.status_code == 200
    html = page.text
    assert "arith" in html and "sharp" in html and "dull" in html
    assert "frontier" in html  # sharp is the frontier, tied with itself
    assert "1.000" in html and "0.250" in html  # the two scores
