"""Catalog entries of strategy ``cheapest-within-gap``: a model that is a choice among other
catalog models by their measured quality (see routing/quality.py).

    models:
      code-auto:
        strategy: cheapest-within-gap
        task: humaneval          # the evaluation task the gaps are measured on
        max_gap: 0.05            # the largest acceptable gap to the frontier (upper bound)
        candidates: [gpt-4o, gpt-4o-mini, llama-3.1-8b]
        price: {markup: "0.2"}   # as any model: its price rule over the serving deployment

The entry has no deployments of its own: it routes to its candidates' deployments (the same
objects, so health and providers are shared), filled in once every model is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .model import Catalog, ModelEntry


@dataclass(frozen=True, slots=True)
class GapPolicy:
    task: str
    max_gap: float
    candidates: tuple[str, ...]
    owners: dict = field(default_factory=dict)  # deployment name → candidate model id


def gap_model(model_id: str, data: dict, where: str, allowed: set, check_keys: Callable,
              parse: Callable[[dict], ModelEntry]) -> ModelEntry:
    from .loader import CatalogError

    check_keys(data, allowed, where)
    task = data.get("task")
    if not isinstance(task, str) or not task:
        raise CatalogError(f"{where}.task: the evaluation task to route by, e.g. humaneval")
    max_gap = data.get("max_gap")
    if isinstance(max_gap, bool) or not isinstance(max_gap, (int, float)) or max_gap < 0:
        raise CatalogError(f"{where}.max_gap: a number ≥ 0 (a score difference), "
                           f"not {max_gap!r}")
    candidates = data.get("candidates")
    if (not isinstance(candidates, list) or not candidates
            or not all(isinstance(c, str) for c in candidates)):
        raise CatalogError(f"{where}.candidates: a non-empty list of model ids")
    # Parse the rest as an ordinary model with a placeholder deployment, for its policies.
    rest = {k: v for k, v in data.items() if k not in ("task", "max_gap", "candidates")}
    rest["strategy"] = "fallback"
    rest["deployments"] = [{"provider": "local", "name": f"{model_id}/unlinked"}]
    entry = parse(rest)
    entry.strategy = "cheapest-within-gap"
    entry.deployments = []
    entry.gap_policy = GapPolicy(task, float(max_gap), tuple(candidates))
    return entry


def link_candidates(catalog: Catalog) -> None:
    from .loader import CatalogError

    for entry in catalog.models.values():
        policy: Any = entry.gap_policy
        if policy is None:
            continue
        owners, deployments = {}, []
        for name in policy.candidates:
            candidate = catalog.models.get(name)
            if candidate is None:
                raise CatalogError(f"models.{entry.id}.candidates: no model {name!r} in the "
                                   "catalog")
            if candidate.gap_policy is not None:
                raise CatalogError(f"models.{entry.id}.candidates: {name!r} is itself "
                                   "routed by gap")
            for dep in candidate.deployments:
                owners[dep.name] = name
                deployments.append(dep)
        entry.deployments = deployments
        entry.gap_policy = GapPolicy(policy.task, policy.max_gap, policy.candidates, owners)
