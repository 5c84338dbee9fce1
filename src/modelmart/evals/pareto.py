"""Quality against cost: which models are worth their price on a task.

A model is *dominated* when another is at least as good and at most as dear, and strictly
better in one of the two; the Pareto front is the models no one dominates. For a dominated
model we name the cheapest model that beats or ties it — "ties" meaning the paired
comparison cannot tell them apart (its interval for the difference contains 0) — so an
operator reads "use B instead of A: as good, cheaper".
"""

from __future__ import annotations

Point = tuple[str, float, float]  # (model, quality, dollars per item)


def pareto_front(points: list[Point]) -> set[str]:
    front = set()
    for name, quality, cost in points:
        dominated = any(q >= quality and c <= cost and (q > quality or c < cost)
                        for n, q, c in points if n != name)
        if not dominated:
            front.add(name)
    return front


def _not_worse(comparisons: dict, candidate: str, model: str, cq: float, mq: float) -> bool:
    """candidate beats or ties model: better on the means, or tied by the paired interval."""
    comp = comparisons.get((candidate, model))
    if comp is not None:
        return comp["low"] <= 0 <= comp["high"] or comp["diff"] > 0
    comp = comparisons.get((model, candidate))
    if comp is not None:
        return comp["low"] <= 0 <= comp["high"] or comp["diff"] < 0
    return cq >= mq


def cheaper_alternatives(points: list[Point], comparisons: dict) -> dict[str, str]:
    """For each model, the cheapest strictly cheaper model that beats or ties it."""
    out = {}
    for name, quality, cost in points:
        options = [(c, q, n) for n, q, c in points
                   if n != name and c < cost and _not_worse(comparisons, n, name, q, quality)]
        if options:
            out[name] = min(options, key=lambda o: (o[0], -o[1]))[2]
    return out
