"""``modelmart eval run`` end to end: the gateway in-process, fake upstreams answering by
rule, records with the ledger's figures, exclusions, the budget, and resuming after kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from modelmart.cli.main import main
from modelmart.core.money import usd_to_pico
from modelmart.store.base import open_store
from modelmart.store.evals import EvalStore

from .fake_models import ITEMS, RuleModel, catalog, task_file


@pytest.fixture(scope="module")
def upstreams():
    good = RuleModel(right=lambda a, b: a % 5 != 0,
                     fail=lambda a, b, n: 500 if (a, b) == (7, 3) and n == 0 else None)
    bad = RuleModel(right=lambda a, b: a % 2 == 0,
                    fail=lambda a, b, n: 503 if (a, b) == (11, 4) else None)
    slow = RuleModel(right=lambda a, b: a % 3 != 0, delay=0.15)
    for fake in (good, bad, slow):
        fake.start()
    yield {"good": good, "bad": bad, "slow": slow}
    for fake in (good, bad, slow):
        fake.stop()


@pytest.fixture
def setup(tmp_path, upstreams, monkeypatch):
    monkeypatch.setenv("MODELMART_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.delenv("MODELMART_CONFIG", raising=False)
    return {"task": task_file(tmp_path / "arith.jsonl"),
            "config": catalog(tmp_path / "catalog.yaml", upstreams),
            "db": f"sqlite:///{tmp_path / 'mm.db'}", "tmp": tmp_path}


def _records(db: str, run_id: int | None = None):
    async def read():
        store = await open_store(db)
        try:
            evals = EvalStore(store)
            runs = await evals.list_runs()
            records = await evals.records(run_id=run_id or runs[-1].id)
            spent = {r.id: sum([await store.spent(key_id=k) for k in r.key_ids]) for r in runs}
            usage = {rid: await store.get_usage(rid) for rec in records for rid in rec.request_ids}
            return runs, records, spent, usage
        finally:
            await store.close()
    return asyncio.run(read())


def _eval(setup, *args) -> int:
    return main(["eval", "run", setup["task"], "--config", setup["config"],
                 "--database", setup["db"], *args])


def test_a_run_stores_item_records_with_ledger_figures(setup, capsys):
    assert _eval(setup, "--models", "good,bad", "--retries", "1") == 0
    runs, records, spent, usage = _records(setup["db"])
    assert runs[-1].status == "done" and len(records) == 2 * len(ITEMS)
    by = {(r.model, r.item): r for r in records}
    # scored by rule: good is wrong when a % 5 == 0, bad when a is odd
    for a, b in ITEMS:
        assert by[("good", f"q{a}-{b}")].score == float(a % 5 != 0)
        if (a, b) != (11, 4):
            assert by[("bad", f"q{a}-{b}")].score == float(a % 2 == 0)
    # a 500 once is retried and then scored; a 503 every time is excluded, not wrong
    retried = by[("good", "q7-3")]
    assert retried.score == 1.0 and retried.attempts == 2 and len(retried.request_ids) == 2
    excluded = by[("bad", "q11-4")]
    assert excluded.score is None and excluded.error_kind == "server_error"
    assert excluded.attempts == 2
    assert [usage[i].http_status for i in excluded.request_ids] == [503, 503]
    # tokens, cost and latency are the ledger's, by request id
    rec = by[("good", "q4-3")]
    row = usage[rec.request_id]
    assert (rec.input_tokens, rec.output_tokens) == (24, 3) == (row.input_tokens, row.output_tokens)
    assert rec.price_pico == row.price_pico > rec.cost_pico == row.cost_pico > 0
    assert rec.latency_ms == row.latency_ms and rec.deployment == row.deployment
    assert rec.prompt and len(rec.prompt_hash) == 16 and rec.task_version == runs[-1].task_version
    # the evaluation customer was billed exactly what the records say
    assert spent[runs[-1].id] == sum(r.price_pico for r in records)
    out = capsys.readouterr().out
    assert "good:" in out and "bad:" in out and "excluded" in out


def test_the_budget_is_never_exceeded(setup):
    budget = "0.0002"
    assert _eval(setup, "--models", "good,bad", "--budget", budget, "--concurrency", "3",
                 "--retries", "0", "--max-tokens", "16") == 0
    runs, records, spent, _ = _records(setup["db"])
    run = runs[-1]
    assert run.status == "budget" and 0 < len(records) < 2 * len(ITEMS)
    assert spent[run.id] <= usd_to_pico(budget)
    assert run.budget_pico == usd_to_pico(budget)
    # the runner stopped on its own reservations: the gateway (whose eval key carries the
    # remaining budget too) never had to refuse a call for money
    assert _refused_for_budget(setup["db"], run.key_ids) == 0


def _refused_for_budget(db: str, key_ids: list[int]) -> int:
    async def count():
        store = await open_store(db)
        try:
            rows = await store.usage_rows()
            return sum(1 for r in rows if r.key_id in key_ids and r.http_status == 402)
        finally:
            await store.close()
    return asyncio.run(count())


def _command(setup, db: str) -> list[str]:
    return [sys.executable, "-m", "modelmart.cli.main", "eval", "run", setup["task"],
            "--models", "slow,good", "--config", setup["config"], "--database", db,
            "--concurrency", "2", "--retries", "1"]


def test_a_run_killed_with_kill_9_resumes_to_the_same_records(setup):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    whole = f"sqlite:///{setup['tmp'] / 'whole.db'}"
    subprocess.run(_command(setup, whole), env=env, check=True, capture_output=True,
                   timeout=120)
    killed = setup["db"]
    proc = subprocess.Popen(_command(setup, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            if len(_records(killed)[1]) >= 6:
                break
        except Exception:  # tables not there yet
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    runs, partial, _, _ = _records(killed)
    assert runs[-1].status == "running" and 6 <= len(partial) < 2 * len(ITEMS)
    done_before = {(r.model, r.item): r.request_id for r in partial}
    # the same command again resumes the unfinished run
    result = subprocess.run(_command(setup, killed), env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resuming run {runs[-1].id}" in result.stderr
    runs, resumed, _, _ = _records(killed)
    assert len(runs) == 1 and runs[0].status == "done" and len(runs[0].key_ids) == 2
    _, reference, _, _ = _records(whole)

    def essence(records):
        return sorted((r.model, r.item, r.epoch, r.score, r.output, r.error_kind,
                       r.input_tokens, r.output_tokens, r.price_pico) for r in records)
    assert essence(resumed) == essence(reference)
    # finished items were not redone: their records (and requests) are the first run's
    after = {(r.model, r.item): r.request_id for r in resumed}
    assert all(after[k] == rid for k, rid in done_before.items())


def test_a_run_against_a_running_server(setup, upstreams):
    """--server URL --api-key KEY: the same records, read from the server's ledger."""
    import yaml

    from tests.harness import GatewayServer

    data = yaml.safe_load(open(setup["config"]))
    server = GatewayServer(data, database_url=setup["db"]).start()
    try:
        assert _eval(setup, "--models", "good", "--server", server.url,
                     "--api-key", server.key, "--limit", "5") == 0
    finally:
        server.stop()
    runs, records, spent, usage = _records(setup["db"])
    assert runs[-1].status == "done" and len(records) == 5
    assert all(usage[r.request_id].price_pico == r.price_pico > 0 for r in records)
    assert spent[runs[-1].id] == sum(r.price_pico for r in records)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief. ☃"}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4 " * 300}, {"role": "user", "content": "and 3+3?"}],
])
def test_each_call_is_drawn_at_the_gateways_own_bound(messages):
    # the runner's per-call bound (what it reserves before sending) is never below what the
    # gateway's admission reserves for the same body: otherwise the gateway refuses (402)
    # a call the runner thought it had covered, near the budget's end
    from modelmart.dialects.openai_chat.request import decode_request
    from modelmart.metering.bounds import input_token_bound, text_chat_bound
    request = decode_request({"model": "m", "messages": messages, "max_tokens": 16})
    assert text_chat_bound(m["content"] for m in messages) >= input_token_bound(request)
