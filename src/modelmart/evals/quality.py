"""Measured gaps for routing: the newest evaluation of each task a ``cheapest-within-gap``
model routes by, put on the router's QualityBoard, refreshed as new runs land.

The gateway's hook (in ``App.startup``):
    self._watch(follow_quality(self.router.quality, self.store, self.catalog))
"""

from __future__ import annotations

import asyncio
import logging

from modelmart.routing.quality import Measured, QualityBoard
from modelmart.store.evals import EvalStore

from .results import analyse, kind_of_records, latest_records

log = logging.getLogger("modelmart.evals")
REFRESH_S = 60.0


async def measure(store, task: str, seed: int = 0) -> Measured | None:
    """Each model's upper gap bound on ``task`` from its newest run (None: never run)."""
    records = await EvalStore(store).records(task=task)
    latest = latest_records(records)
    if not latest:
        return None
    (name, version), recs = next(iter(latest.items()))
    result = analyse(name, version, recs, seed=seed,
                     binary=await kind_of_records(EvalStore(store), recs))
    gaps = {m.model: m.gap_high for m in result.models if m.gap_high is not None}
    runs = sorted({r.run_id for r in recs})
    label = "run" if len(runs) == 1 else "runs"
    return Measured(gaps, f"eval {label} {', '.join(map(str, runs))} ({name}@{version})")


async def refresh(board: QualityBoard, store, catalog) -> None:
    tasks = {e.gap_policy.task for e in catalog.models.values() if e.gap_policy is not None}
    for task in sorted(tasks):
        measured = await measure(store, task)
        if measured is not None:
            board.update(task, measured)


async def follow_quality(board: QualityBoard, store, catalog,
                         interval: float = REFRESH_S) -> None:
    if not any(e.gap_policy is not None for e in catalog.models.values()):
        return
    while True:
        try:
            await refresh(board, store, catalog)
        except Exception:
            log.exception("reading evaluation results for routing failed")
        await asyncio.sleep(interval)
