"""The leaderboard: every task's newest version, each model's newest run on it, from the
records in the store. Rendered as a table, JSON or markdown."""

from __future__ import annotations

import json

from modelmart.store.evals import EvalStore

from .results import TaskResult, analyse, kind_of_records, latest_records
from .stats import bradley_terry


async def leaderboard(evals: EvalStore, task: str | None = None, seed: int = 0,
                      reported: list[dict] | None = None) -> list[dict]:
    """``reported``: published scores (``load_reported``), shown apart and labelled."""
    records = await evals.records(task=task)
    board = []
    for (name, version), recs in sorted(latest_records(records).items()):
        result = analyse(name, version, recs, seed=seed,
                         binary=await kind_of_records(evals, recs))
        entry = result.to_dict()
        entry["ratings"] = await _ratings(evals, name, version, seed)
        entry["reported"] = [r for r in reported or [] if r["task"] == name]
        board.append(entry)
    return board


def load_reported(path: str) -> list[dict]:
    """Published scores from a YAML or JSON list of {task, model, score, source}: never
    mixed with measured ones, always shown with their source."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of {{task, model, score, source}}")
    out = []
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict) or not all(row.get(k) not in (None, "")
                                                for k in ("task", "model", "score", "source")):
            raise ValueError(f"{path}, entry {n}: task, model, score and source are required "
                             "(a published score without its source is not shown)")
        out.append({"task": str(row["task"]), "model": str(row["model"]),
                    "score": float(row["score"]), "source": str(row["source"]),
                    "note": str(row.get("note") or "")})
    return out


async def _ratings(evals: EvalStore, task: str, version: str, seed: int) -> list[dict]:
    """Bradley–Terry ratings from pairwise verdicts, when the task has any."""
    verdicts = [v for v in await evals.verdicts(task=task)
                if v.task_version == version and v.outcome is not None]
    if not verdicts:
        return []
    models = sorted({v.model_a for v in verdicts} | {v.model_b for v in verdicts})
    index = {m: i for i, m in enumerate(models)}
    # the turns of one question are drawn together in the bootstrap ("81:1", "81:2")
    fits = bradley_terry([(f"{v.item.split(':')[0]}/{v.epoch}", index[v.model_a], index[v.model_b],
                           v.outcome) for v in verdicts], len(models), seed=seed, prior=0.01)
    return sorted(({"model": m, **fit, "judge": verdicts[0].judge}
                   for m, fit in zip(models, fits)), key=lambda r: -r["theta"])


def _row(m: dict) -> dict:
    gap = "" if m["gap"] is None else f"{m['gap']:.3f} [{m['gap_low']:.3f}, {m['gap_high']:.3f}]"
    scored = m["items"] > 0
    return {
        "model": m["model"], "score": f"{m['mean']:.3f}" if scored else "-",
        "95% interval": f"[{m['low']:.3f}, {m['high']:.3f}]" if scored else "no scored item",
        "gap to frontier": gap,
        "frontier": "" if m["tied"] is None else "tied" if m["tied"] else "behind",
        "items": str(m["items"]), "excluded": str(m["excluded"]),
        "$/item": f"{m['usd_per_item']:.6f}",
        "ms/item": "" if m["latency_ms_per_item"] is None else f"{m['latency_ms_per_item']:.0f}",
        "cheaper, as good": m["cheaper_alternative"] or "",
    }


def render(board: list[dict], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(board, indent=2, default=str)
    out = []
    for task in board:
        rows = [_row(m) for m in sorted(task["models"],
                                        key=lambda m: -m["mean"] if m["items"] else 0)]
        title = (f"{task['task']}@{task['version']} ({'pass/fail' if task['binary'] else 'scale'}; "
                 f"frontier measured on {task['items']} shared items)")
        out.append(f"## {title}\n" if fmt == "md" else title)
        out.append(_table(rows, fmt))
        if task.get("ratings"):
            ratings = [{"model": r["model"], "Bradley-Terry": f"{r['elo']:.0f}",
                        "95% interval": f"[{1000 + 173.72 * r['low']:.0f}, "
                                        f"{1000 + 173.72 * r['high']:.0f}]",
                        "judge": r["judge"]} for r in task["ratings"]]
            out.append("\nPairwise (Elo scale, judge-rated):" if fmt != "md"
                       else "\nPairwise ratings (Elo scale, judge-rated):\n")
            out.append(_table(ratings, fmt))
        if task.get("reported"):
            rows = [{"model": r["model"], "reported score": f"{r['score']:.3f}",
                     "source": r["source"], "note": r["note"]} for r in task["reported"]]
            out.append("\nReported by others, not measured here:" if fmt != "md"
                       else "\nReported by others, not measured here:\n")
            out.append(_table(rows, fmt))
        out.append("")
    return "\n".join(out) if board else "(no evaluation records yet)"


def _table(rows: list[dict], fmt: str) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    if fmt == "md":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(r[c].ljust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(lines)


__all__ = ["leaderboard", "render", "TaskResult"]
