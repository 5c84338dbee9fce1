"""Pairwise judging of a run's stored answers (MT-bench's pairwise mode): for every item,
every pair of models, every turn, the judge compares the two answers in both orders
(``mtbench.judge_pair``). Verdicts are stored as they come (a rerun skips those it has) and
rated with Bradley–Terry in the leaderboard. Item ids of verdicts are ``<item>:<turn>``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

from modelmart.store.evals import EvalRun, EvalStore, Verdict

from .gateway import Gateway
from .mtbench import judge_pair
from .progress import Progress
from .task import InfraError, Task


def verdict_item(item: str, turn: int) -> str:
    return f"{item}:{turn + 1}"


async def judge_pairs(gateway: Gateway, evals: EvalStore, run: EvalRun, task: Task,
                      judge: str, concurrency: int = 2,
                      progress: Progress | None = None) -> list[Verdict]:
    samples = {s.id: s for s in task.samples}
    answers: dict[tuple[str, int], dict[str, list[str]]] = defaultdict(dict)
    for r in await evals.records(run_id=run.id):
        turns = r.detail.get("answers") or ([r.output] if r.output is not None else None)
        if turns and r.error_kind is None:
            answers[(r.item, r.epoch)][r.model] = turns
    have = {(v.item, v.epoch, v.model_a, v.model_b) for v in await evals.verdicts(run_id=run.id)}
    work = []
    for (item, epoch), by_model in sorted(answers.items()):
        for a, b in itertools.combinations(sorted(by_model), 2):
            for turn in range(len(samples[item].turns)):
                if (verdict_item(item, turn), epoch, a, b) not in have:
                    work.append((item, epoch, a, b, turn))
    if progress:
        progress.start(total=len(work))
    caller = gateway.caller(judge)
    slots = asyncio.Semaphore(max(1, concurrency))
    done: list[Verdict] = []

    async def one(item, epoch, a, b, turn):
        async with slots:
            by_model = answers[(item, epoch)]
            try:
                outcome, gens = await judge_pair(caller, samples[item], by_model[a],
                                                 by_model[b], turn)
            except InfraError as err:
                outcome, gens, note = None, [], f"{err.kind}: {err}"
            else:
                note = None
            rows = [await gateway.usage(g.request_id) for g in gens if g.request_id]
            verdict = Verdict(run.id, run.task, run.task_version, verdict_item(item, turn),
                              epoch, a, b, judge, outcome,
                              {"judgements": [g.text[-400:] for g in gens],
                               "request_ids": [g.request_id for g in gens], "error": note},
                              sum(r.price_pico for r in rows if r), time.time())
            await evals.insert_verdicts([verdict])
            done.append(verdict)
            if progress:
                progress.advance(error=outcome is None,
                                 spent_pico=sum(v.price_pico for v in done))

    await asyncio.gather(*(one(*w) for w in work))
    if progress:
        progress.finish("done")
    return done
