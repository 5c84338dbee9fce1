"""Item-level records → per-task results: each model's mean with its interval, its frontier
gap, pairwise comparisons, and what it cost per item. Nothing here reads anything but the
records, so any report can be recomputed from the store."""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from modelmart.core.money import format_usd
from modelmart.store.evals import EvalRecord, EvalRun, EvalStore

from . import stats
from .pareto import cheaper_alternatives, pareto_front


@dataclass(slots=True)
class ModelResult:
    model: str
    items: int  # items with a score
    excluded: int  # records without a score (infrastructure failures, unparsable judges)
    mean: float
    low: float
    high: float
    method: str
    gap: float | None = None
    gap_low: float | None = None
    gap_high: float | None = None
    tied: bool | None = None
    share_best: float | None = None
    usd_per_item: float = 0.0  # what the evaluation customer was billed, per record
    cost_usd_per_item: float = 0.0  # the providers' cost behind it
    latency_ms_per_item: float | None = None
    tokens_per_item: float = 0.0
    pass_at: dict = field(default_factory=dict)
    on_pareto_front: bool | None = None
    cheaper_alternative: str | None = None
    runs: list[int] = field(default_factory=list)


@dataclass(slots=True)
class TaskResult:
    task: str
    version: str
    binary: bool
    items: int  # items every model answered (the frontier is measured on these)
    models: list[ModelResult]
    comparisons: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def _item_scores(records: list[EvalRecord]) -> dict[str, dict[str, list[float]]]:
    """model → item → the scores of its epochs (scored records only)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.score is not None:
            out[r.model][r.item].append(r.score)
    return out


def _pass_at(records: list[EvalRecord]) -> dict:
    per_item: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.score is not None:
            per_item[r.item].append(r.score)
    n = [len(v) for v in per_item.values()]
    if not n or min(n) < 2:
        return {}
    c = [int(sum(s == 1.0 for s in v)) for v in per_item.values()]
    return {f"pass@{k}": float(stats.pass_at_k(n, c, k).mean())
            for k in (1, 5, 10, 100) if k <= min(n)}


def kind_of(run: EvalRun | None) -> bool | None:
    """Whether a run's task is pass/fail (its params say, since runs record it)."""
    kind = (run.params or {}).get("kind") if run is not None else None
    return None if kind is None else kind == "binary"


async def kind_of_records(evals: EvalStore, records: list[EvalRecord]) -> bool | None:
    return kind_of(await evals.get_run(records[0].run_id)) if records else None


def analyse(task: str, version: str, records: list[EvalRecord], *, seed: int = 0,
            n_boot: int = stats.N_BOOT, binary: bool | None = None) -> TaskResult:
    """``binary``: whether scores are pass/fail (the run's task kind); None: guessed from the
    values, which a 1-10 rating of 1 would fool, so callers pass it when they know."""
    by_model: dict[str, list[EvalRecord]] = defaultdict(list)
    for r in records:
        by_model[r.model].append(r)
    scores = _item_scores(records)
    groups = {r.item: r.item_group for r in records}
    values = [s for r in records if (s := r.score) is not None]
    if binary is None:
        binary = bool(values) and all(v in (0.0, 1.0) for v in values)
    results = []
    for model, recs in sorted(by_model.items()):
        items = sorted(scores.get(model, {}))
        vec = [float(np.mean(scores[model][i])) for i in items]
        grp = [groups[i] for i in items] if any(groups[i] for i in items) else None
        iv = stats.mean_interval(vec, binary=binary, groups=grp, seed=seed, n_boot=n_boot)
        scored = [r for r in recs if r.score is not None]
        results.append(ModelResult(
            model=model, items=len(items), excluded=len(recs) - len(scored),
            mean=iv.estimate, low=iv.low, high=iv.high, method=iv.method,
            usd_per_item=float(format_usd(sum(r.price_pico for r in recs) // max(len(recs), 1))),
            cost_usd_per_item=float(format_usd(sum(r.cost_pico for r in recs)
                                               // max(len(recs), 1))),
            latency_ms_per_item=(float(np.mean([r.latency_ms for r in scored
                                                if r.latency_ms is not None]))
                                 if any(r.latency_ms is not None for r in scored) else None),
            tokens_per_item=float(np.mean([r.input_tokens + r.output_tokens for r in recs])),
            pass_at=_pass_at(recs), runs=sorted({r.run_id for r in recs})))
    common = sorted(set.intersection(*(set(scores[m.model]) for m in results))
                    if results and all(m.model in scores for m in results) else set())
    comparisons = []
    if common and len(results) > 1:
        matrix = np.array([[np.mean(scores[m.model][i]) for i in common] for m in results])
        grp = [groups[i] for i in common] if any(groups[i] for i in common) else None
        for m, gap in zip(results, stats.frontier_gaps(matrix, groups=grp, seed=seed,
                                                       n_boot=n_boot)):
            m.gap, m.gap_low, m.gap_high = gap["gap"], gap["low"], gap["high"]
            m.tied, m.share_best = gap["tied"], gap["share_best"]
        for a in range(len(results)):
            for b in range(a + 1, len(results)):
                comp = stats.paired_comparison(matrix[a], matrix[b], binary=binary,
                                               groups=grp, seed=seed, n_boot=n_boot)
                comparisons.append({"a": results[a].model, "b": results[b].model, **comp})
    elif len(results) == 1 and results[0].items:
        only = results[0]
        only.gap, only.gap_low, only.gap_high, only.tied, only.share_best = 0.0, 0.0, 0.0, True, 1.0
    front = pareto_front([(m.model, m.mean, m.usd_per_item) for m in results])
    alternatives = cheaper_alternatives(
        [(m.model, m.mean, m.usd_per_item) for m in results],
        {(c["a"], c["b"]): c for c in comparisons})
    for m in results:
        m.on_pareto_front = m.model in front
        m.cheaper_alternative = alternatives.get(m.model)
    return TaskResult(task, version, binary, len(common), results, comparisons)


def latest_records(records: list[EvalRecord]) -> dict[tuple[str, str], list[EvalRecord]]:
    """Per task, the newest version's records; per model, those of its newest run."""
    newest_version: dict[str, tuple[float, str]] = {}
    for r in records:
        if r.task not in newest_version or r.created_at > newest_version[r.task][0]:
            newest_version[r.task] = (r.created_at, r.task_version)
    newest_run: dict[tuple[str, str], int] = {}
    for r in records:
        if r.task_version == newest_version[r.task][1]:
            key = (r.task, r.model)
            newest_run[key] = max(newest_run.get(key, 0), r.run_id)
    out: dict[tuple[str, str], list[EvalRecord]] = defaultdict(list)
    for r in records:
        if r.task_version == newest_version[r.task][1] and newest_run[(r.task, r.model)] == r.run_id:
            out[(r.task, r.task_version)].append(r)
    return out


async def run_result(evals: EvalStore, run: EvalRun, seed: int = 0) -> TaskResult:
    return analyse(run.task, run.task_version, await evals.records(run_id=run.id), seed=seed,
                   binary=kind_of(run))


async def print_summary(evals: EvalStore, run: EvalRun, stream=None) -> None:
    stream = stream or sys.stdout
    result = await run_result(evals, run)
    print(f"run {run.id}: {run.task}@{run.task_version}, {run.status}, "
          f"{run.wall_s:.1f} s", file=stream)
    for m in result.models:
        gap = "" if m.gap is None else (f"  gap {m.gap:.3f} [{m.gap_low:.3f}, {m.gap_high:.3f}]"
                                        f"{' (tied with the frontier)' if m.tied else ''}")
        print(f"  {m.model}: {m.mean:.3f} [{m.low:.3f}, {m.high:.3f}] on {m.items} items, "
              f"{m.excluded} excluded, ${m.usd_per_item:.6f}/item{gap}", file=stream)
