"""Routing by measured quality: the ``cheapest-within-gap`` strategy.

A model with this strategy is a choice among other catalog models (``candidates``): a
request goes to the cheapest candidate whose measured gap to the frontier on ``task`` is
within ``max_gap`` at its interval's upper bound; the other candidates follow as fallbacks.
The gaps come from evaluation runs (``evals/quality.py`` fills the board); which run the
choice rests on is the route's *basis* (``x-modelmart-route-basis``). With no measurement
for the task yet, the candidates keep catalog order and a warning says so, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modelmart.catalog import Deployment
from modelmart.catalog.gap_routing import GapPolicy

log = logging.getLogger("modelmart.routing")

STRATEGY = "cheapest-within-gap"


@dataclass(frozen=True, slots=True)
class Measured:
    """One task's gaps: model → upper end of its frontier-gap interval, and the basis."""

    gap_high: dict[str, float]
    basis: str  # e.g. "eval run 12 (humaneval@8045b3168869)"


class QualityBoard:
    """The latest measured gaps per task, replaced whole when a new measurement lands."""

    def __init__(self) -> None:
        self._tasks: dict[str, Measured] = {}
        self._warned: set[str] = set()

    def update(self, task: str, measured: Measured) -> None:
        self._tasks[task] = measured

    def get(self, task: str) -> Measured | None:
        return self._tasks.get(task)

    def basis(self, policy: GapPolicy) -> str:
        measured = self._tasks.get(policy.task)
        return measured.basis if measured else f"no evaluation of {policy.task}: catalog order"

    def order(self, policy: GapPolicy, deps: list[Deployment],
              cost_of_model) -> list[Deployment]:
        """``deps`` (the candidates' deployments) with the chosen candidate's first."""
        measured = self._tasks.get(policy.task)
        if measured is None:
            if policy.task not in self._warned:
                self._warned.add(policy.task)
                log.warning("%s: no evaluation run of task %s yet; routing in catalog order "
                            "(run 'modelmart eval run %s --models %s')", STRATEGY, policy.task,
                            policy.task, ",".join(policy.candidates))
            return list(deps)
        within = [m for m in policy.candidates
                  if measured.gap_high.get(m, float("inf")) <= policy.max_gap]
        costs = {m: cost_of_model(m) for m in within}
        ranked = sorted(within, key=lambda m: (costs[m] is None, costs[m] or 0))
        rest = [m for m in policy.candidates if m not in ranked]
        rank = {m: i for i, m in enumerate(ranked + rest)}
        return sorted(deps, key=lambda d: rank.get(policy.owners.get(d.name), len(rank)))
