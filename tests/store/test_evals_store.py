"""The evaluation tables (store/evals.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from modelmart.store.evals import EvalRecord, EvalRun, EvalStore, Verdict


def _run(**fields) -> EvalRun:
    now = time.time()
    values = dict(id=0, task="humaneval", task_version="abc123", models=["m-a", "m-b"],
                  params={"epochs": 1, "limit": None}, fingerprint="fp1", status="running",
                  created_at=now, updated_at=now, budget_pico=10**12, key_ids=[3])
    values.update(fields)
    return EvalRun(**values)


def _record(run_id: int, model: str, item: str, epoch: int = 0, **fields) -> EvalRecord:
    values = dict(run_id=run_id, task="humaneval", task_version="abc123", model=model,
                  item=item, epoch=epoch, prompt_hash="h" + item, prompt="p", output="o",
                  score=1.0, detail={"why": "passed"}, input_tokens=10, output_tokens=5,
                  cost_pico=7, price_pico=9, latency_ms=12.5, request_id="r1",
                  request_ids=["r1"], created_at=time.time())
    values.update(fields)
    return EvalRecord(**values)


async def test_runs_records_and_verdicts_round_trip(store):
    evals = EvalStore(store)
    run = await evals.create_run(_run())
    assert run.id > 0
    assert await evals.get_run(run.id) == run
    assert await evals.unfinished_run("fp1") == run
    assert await evals.unfinished_run("other") is None

    first = _record(run.id, "m-a", "HumanEval/0")
    excluded = _record(run.id, "m-b", "HumanEval/0", score=None, error_kind="timeout",
                       attempts=3, request_ids=["r2", "r3", "r4"])
    await evals.insert_records([first, excluded])
    # idempotent: the same (run, model, item, epoch) again keeps the first record
    await evals.insert_records([_record(run.id, "m-a", "HumanEval/0", score=0.0)])
    got = await evals.records(run_id=run.id)
    assert got == [first, excluded]
    assert await evals.done_keys(run.id) == {("m-a", "HumanEval/0", 0), ("m-b", "HumanEval/0", 0)}
    assert await evals.records(task="humaneval", task_version="other") == []

    run.status, run.finished_at, run.wall_s = "done", time.time(), 12.5
    await evals.update_run(run)
    assert (await evals.get_run(run.id)).status == "done"
    assert await evals.unfinished_run("fp1") is None
    assert [r.id for r in await evals.list_runs("humaneval")] == [run.id]

    verdict = Verdict(run.id, "mt-bench", "v1", "81", 0, "m-a", "m-b", "judge", 0.5,
                      {"orders": ["A", "B"]}, 3, time.time())
    await evals.insert_verdicts([verdict, verdict])
    assert await evals.verdicts(run_id=run.id) == [verdict]
