"""MT-bench through the gateway with fake models and a fake judge: single-answer grading,
then pairwise judging with both orders, then Bradley–Terry in the leaderboard."""

from __future__ import annotations

import asyncio

import pytest

from modelmart.cli.main import main
from modelmart.store.base import open_store
from modelmart.store.evals import EvalStore
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Reply

from .fake_models import UPSTREAM_KEY, catalog


class Says(FakeOpenAI):
    def __init__(self, word: str) -> None:
        super().__init__(api_key=UPSTREAM_KEY)
        self.word = word

    def next_reply(self, text: str) -> Reply:
        return Reply(text=f"{self.word} answer to: {text[:20]}", output_tokens=30)


class Judge(FakeOpenAI):
    """Rates GOOD answers 8 and BAD ones 3; in a pairwise prompt, prefers GOOD."""

    def __init__(self) -> None:
        super().__init__(api_key=UPSTREAM_KEY)

    def next_reply(self, text: str) -> Reply:
        if "Assistant B" in text:
            first = min(("GOOD", "BAD"), key=lambda w: text.find(w) if w in text else 10**9)
            return Reply(text=f"Comparing. [[{'A' if first == 'GOOD' else 'B'}]]", output_tokens=9)
        return Reply(text=f"Fine. Rating: [[{8 if 'GOOD' in text else 3}]]", output_tokens=9)


@pytest.fixture(scope="module")
def fakes():
    servers = {"good": Says("GOOD"), "bad": Says("BAD"), "judge": Judge()}
    for s in servers.values():
        s.start()
    yield servers
    for s in servers.values():
        s.stop()


def test_mt_bench_single_grading_then_pairwise(tmp_path, fakes, monkeypatch, capsys):
    monkeypatch.setenv("MODELMART_JOURNAL_DIR", str(tmp_path / "journal"))
    config = catalog(tmp_path / "catalog.yaml", fakes)
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    assert main(["eval", "run", "mt-bench", "--models", "good,bad", "--limit", "3",
                 "--config", config, "--database", db]) == 2  # no judge: refused
    assert "needs a judge" in capsys.readouterr().err
    assert main(["eval", "run", "mt-bench", "--models", "good,bad", "--judge", "judge",
                 "--limit", "3", "--config", config, "--database", db]) == 0
    assert main(["eval", "pairwise", "1", "--judge", "judge", "--config", config,
                 "--database", db]) == 0
    out = capsys.readouterr().out
    assert "Pairwise (Elo scale, judge-rated)" in out

    async def read():
        store = await open_store(db)
        try:
            evals = EvalStore(store)
            return await evals.records(run_id=1), await evals.verdicts(run_id=1)
        finally:
            await store.close()
    records, verdicts = asyncio.run(read())
    scores = {(r.model, r.item): r for r in records}
    assert {r.score for r in records if r.model == "good"} == {8.0}
    assert {r.score for r in records if r.model == "bad"} == {3.0}
    rec = scores[("good", "81")]
    assert len(rec.detail["answers"]) == 2 and rec.detail["ratings"] == [8.0, 8.0]
    assert rec.judge_price_pico > 0 and rec.price_pico > 0
    assert len(verdicts) == 3 * 2 and {v.item for v in verdicts} >= {"81:1", "81:2"}
    assert all((v.model_a, v.model_b, v.outcome) == ("bad", "good", 0.0) for v in verdicts)
    assert all(len(v.detail["judgements"]) == 2 for v in verdicts)  # both orders asked
