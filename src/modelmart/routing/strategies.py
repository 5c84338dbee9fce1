"""Strategies: the order in which a model's capable deployments are tried.

Every strategy returns all the deployments it was given, best first; the ones after the first
are the fallbacks. Health (cooling deployments) is applied afterwards, by the router.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from modelmart.catalog import Deployment

from .health import HealthBoard

# (deployment, input tokens, output tokens) -> cost in picodollars, or None when unknown.
CostFn = Callable[[Deployment, int, int], "int | None"]


@dataclass(slots=True)
class Context:
    """What a strategy may look at besides the deployments."""

    stream: bool
    input_tokens: int
    output_tokens: int
    board: HealthBoard
    rng: random.Random
    cost_of: CostFn | None = None
    entry: object | None = None  # the ModelEntry (cheapest-within-gap reads its policy)
    quality: object | None = None  # routing.quality.QualityBoard


def fallback(deps: list[Deployment], ctx: Context) -> list[Deployment]:
    return list(deps)


def weighted(deps: list[Deployment], ctx: Context) -> list[Deployment]:
    """One deployment drawn at random by weight, then the others in catalog order. A weight
    of 0 makes a standby: never drawn, still a fallback."""
    weights = [d.weight for d in deps]
    if sum(weights) <= 0:
        return list(deps)
    first = ctx.rng.choices(deps, weights=weights)[0]
    return [first] + [d for d in deps if d is not first]


def least_latency(deps: list[Deployment], ctx: Context) -> list[Deployment]:
    """Fastest first by moving average: time to first event for streams (what a streaming
    client waits for), whole-reply latency otherwise. Unmeasured deployments go first so
    they get measured; among them catalog order."""
    def speed(dep: Deployment) -> float | None:
        h = ctx.board.get(dep)
        preferred, other = (h.ttft_ms, h.latency_ms) if ctx.stream else (h.latency_ms, h.ttft_ms)
        return preferred if preferred is not None else other

    unknown = [d for d in deps if speed(d) is None]
    known = sorted((d for d in deps if speed(d) is not None), key=speed)
    return unknown + known


def lowest_cost(deps: list[Deployment], ctx: Context) -> list[Deployment]:
    """Cheapest first for this request's estimated tokens; deployments of unknown cost after
    the priced ones (they might be dear), catalog order among equals."""
    if ctx.cost_of is None:
        return list(deps)
    costs = {d.name: ctx.cost_of(d, ctx.input_tokens, ctx.output_tokens) for d in deps}
    return sorted(deps, key=lambda d: (costs[d.name] is None, costs[d.name] or 0))


def cheapest_within_gap(deps: list[Deployment], ctx: Context) -> list[Deployment]:
    """The cheapest candidate model within the measured gap first (routing/quality.py)."""
    from .quality import QualityBoard

    policy = getattr(ctx.entry, "gap_policy", None)
    board = ctx.quality if ctx.quality is not None else QualityBoard()
    if policy is None:
        return list(deps)

    def cost_of_model(model: str) -> int | None:
        costs = [ctx.cost_of(d, ctx.input_tokens, ctx.output_tokens) if ctx.cost_of else None
                 for d in deps if policy.owners.get(d.name) == model]
        known = [c for c in costs if c is not None]
        return min(known) if known else None

    return board.order(policy, deps, cost_of_model)


STRATEGIES: dict[str, Callable[[list[Deployment], Context], list[Deployment]]] = {
    "fallback": fallback,
    "weighted": weighted,
    "least-latency": least_latency,
    "lowest-cost": lowest_cost,
    "cheapest-within-gap": cheapest_within_gap,
}


def order(strategy: str, deps: list[Deployment], ctx: Context) -> list[Deployment]:
    return STRATEGIES[strategy](deps, ctx)
