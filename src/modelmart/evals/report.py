"""A run's report: SVG charts (scores with intervals, frontier gap, quality against cost), a
markdown summary and the numbers as JSON, all computed from the run's item-level records."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from modelmart.core.money import format_usd
from modelmart.store.evals import EvalStore

from .leaderboard import _table
from .results import analyse, kind_of
from .svg import interval_chart, scatter


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


async def build_report(evals: EvalStore, run_id: int, seed: int = 0,
                       label: str | None = None) -> dict[str, str]:
    """File name → contents."""
    run = await evals.get_run(run_id)
    if run is None:
        raise ValueError(f"no evaluation run {run_id}")
    records = await evals.records(run_id=run_id)
    result = analyse(run.task, run.task_version, records, seed=seed, binary=kind_of(run))
    # a model with no scored item (all excluded) has no point to draw
    models = sorted((m for m in result.models if m.items), key=lambda m: -m.mean)
    lo, hi = (0.0, 1.0) if result.binary else (1.0, 10.0)
    score_name = "pass@1" if result.binary else "mean judge rating (1-10)"
    files = {
        "scores.svg": interval_chart(
            [(m.model, m.mean, m.low, m.high, f"n={m.items}") for m in models],
            f"{run.task}: {score_name} with 95% intervals", score_name, lo, hi),
        "frontier_gap.svg": interval_chart(
            [(m.model, m.gap or 0.0, m.gap_low or 0.0, m.gap_high or 0.0,
              "tied with the frontier" if m.tied else "behind") for m in models],
            f"{run.task}: gap to the best model (best re-chosen in every bootstrap replicate)",
            f"{score_name} below the frontier", 0.0, max([hi - lo] + [0.0])),
        "quality_cost.svg": scatter(
            [(m.model, m.usd_per_item, m.mean, bool(m.on_pareto_front)) for m in models],
            f"{run.task}: quality against price per item", "USD per item (billed)",
            score_name, (lo, hi)),
    }
    total_price = sum(r.price_pico + r.judge_price_pico for r in records)
    total_cost = sum(r.cost_pico for r in records)
    data = {"run": {"id": run.id, "task": run.task, "version": run.task_version,
                    "models": run.models, "params": run.params, "status": run.status,
                    "wall_s": run.wall_s, "created_at": run.created_at,
                    "finished_at": run.finished_at, "records": len(records),
                    "billed_usd": format_usd(total_price), "cost_usd": format_usd(total_cost)},
            "result": result.to_dict()}
    files["results.json"] = json.dumps(data, indent=2, default=str)
    files["summary.md"] = _markdown(run, result, records, total_price, total_cost, label)
    return files


def _markdown(run, result, records, total_price, total_cost, label) -> str:
    rows = []
    for m in sorted(result.models, key=lambda m: -m.mean if m.items else 0):
        if not m.items:
            rows.append({"model": m.model, "score": "-", "95% interval": "no scored item",
                         "items": "0", "excluded": str(m.excluded), "gap to frontier": "-",
                         "frontier": "-", "$/item": f"{m.usd_per_item:.6f}", "s/item": "-",
                         "tokens/item": f"{m.tokens_per_item:.0f}"})
            continue
        rows.append({
            "model": m.model, "score": f"{m.mean:.3f}", "95% interval":
            f"[{m.low:.3f}, {m.high:.3f}] ({m.method})", "items": str(m.items),
            "excluded": str(m.excluded),
            "gap to frontier": "-" if m.gap is None else
            f"{m.gap:.3f} [{m.gap_low:.3f}, {m.gap_high:.3f}]",
            "frontier": "-" if m.tied is None else "tied" if m.tied else "behind",
            "$/item": f"{m.usd_per_item:.6f}",
            "s/item": "-" if m.latency_ms_per_item is None else f"{m.latency_ms_per_item / 1000:.1f}",
            "tokens/item": f"{m.tokens_per_item:.0f}",
            **{k: f"{v:.3f}" for k, v in m.pass_at.items()}})
    excluded = {}
    for r in records:
        if r.error_kind:
            excluded[r.error_kind] = excluded.get(r.error_kind, 0) + 1
    lines = [
        f"# {run.task}: evaluation run {run.id}" + (f" — {label}" if label else ""),
        "",
        f"- task version `{run.task_version}`; models: {', '.join(run.models)}; "
        f"options: {json.dumps(run.params)}",
        f"- status **{run.status}**; started {_when(run.created_at)}, finished "
        f"{_when(run.finished_at)}; wall time **{run.wall_s / 60:.1f} min**",
        f"- {len(records)} item records; billed to the evaluation customer "
        f"**${format_usd(total_price, 6)}** (provider cost ${format_usd(total_cost, 6)})",
        "- excluded (not scored, never counted as wrong): "
        + (", ".join(f"{n} {k}" for k, n in sorted(excluded.items())) or "none"),
        "",
        "## Scores",
        "",
        _table(_same_columns(rows), "md") if rows else "(no records)",
        "",
        "![scores](scores.svg)",
        "",
        "## Gap to the frontier",
        "",
        "The gap is the paired difference to the best model on the items all models "
        "answered; in every bootstrap replicate the best model is chosen again, so the "
        "winner's luck is not counted as its lead. *Tied* means the model was the best in "
        "at least 2.5% of the replicates (the interval reaches 0).",
        "",
        "![frontier gap](frontier_gap.svg)",
        "",
        "## Quality against cost",
        "",
        "![quality against cost](quality_cost.svg)",
        "",
    ]
    for m in result.models:
        if m.cheaper_alternative:
            lines.append(f"- {m.model} is dominated: **{m.cheaper_alternative}** is cheaper "
                         "and beats or ties it.")
    if result.comparisons:
        lines += ["", "## Paired comparisons", ""]
        lines.append(_table([{"a": c["a"], "b": c["b"], "a − b": f"{c['diff']:.3f}",
                              "95% interval": f"[{c['low']:.3f}, {c['high']:.3f}]",
                              "test": c["method"], "p": f"{c['p_value']:.3g}"}
                             for c in result.comparisons], "md"))
    lines.append("")
    return "\n".join(lines)


def _same_columns(rows: list[dict]) -> list[dict]:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    return [{c: r.get(c, "-") for c in columns} for r in rows]


async def write_report(evals: EvalStore, run_id: int, out_dir: str, seed: int = 0,
                       label: str | None = None) -> list[str]:
    files = await build_report(evals, run_id, seed, label)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        paths.append(path)
    return paths
