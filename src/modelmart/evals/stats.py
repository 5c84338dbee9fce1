"""Statistics from item-level scores only: intervals, paired comparisons, the frontier gap,
Bradley–Terry ratings, pass@k. Every bootstrap is seeded, so a report is reproducible.

Conventions: a *score vector* holds one number per item (epochs already averaged);
``groups`` (optional, one label per item) marks items that are not independent (several
questions about one passage): intervals then treat a group, not an item, as the unit drawn.
The quantity estimated is the mean over the population of items the task's items stand for
(Miller, "Adding Error Bars to Evals", 2024), not over these particular items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
N_BOOT = 2000


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    low: float
    high: float
    method: str  # "wilson" | "cluster" | "bootstrap"
    n: int  # items

    def to_dict(self) -> dict:
        return {"mean": self.estimate, "low": self.low, "high": self.high,
                "method": self.method, "n": self.n}


def rng_for(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- pass@k ------------------------------------------------------------------------------

def pass_at_k(n: Sequence[int], c: Sequence[int], k: int) -> np.ndarray:
    """Per item, the unbiased estimate of pass@k from n samples of which c passed:
    1 - C(n-c, k) / C(n, k), as a product to stay exact for large n (Chen et al., 2021)."""
    n_arr = np.asarray(n, dtype=np.int64)
    c_arr = np.asarray(c, dtype=np.int64)
    out = np.ones(len(n_arr))
    for i, (ni, ci) in enumerate(zip(n_arr, c_arr)):
        if ni < k:
            raise ValueError(f"pass@{k} needs at least {k} samples per item (item {i} has {ni})")
        if ni - ci >= k:
            out[i] = 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1))
    return out


# ---- one model's mean ----------------------------------------------------------------------

def wilson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z = sps.norm.ppf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _clusters(groups: Sequence | None, n: int) -> np.ndarray:
    """Cluster index per item: each item alone when no groups are given."""
    if groups is None:
        return np.arange(n)
    _, index = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return index


def _has_shared_groups(groups: Sequence | None) -> bool:
    return groups is not None and len(set(map(str, groups))) < len(groups)


def cluster_interval(values: np.ndarray, groups: Sequence, alpha: float = ALPHA,
                     bounds: tuple[float, float] | None = None) -> Interval:
    """Mean with a cluster-robust standard error (CR1), t with G-1 degrees of freedom."""
    index = _clusters(groups, len(values))
    n, g = len(values), index.max() + 1
    mean = float(values.mean())
    resid_sums = np.bincount(index, weights=values - mean, minlength=g)
    se = np.sqrt(g / (g - 1) * np.sum(resid_sums ** 2)) / n if g > 1 else float("nan")
    half = sps.t.ppf(1 - alpha / 2, max(g - 1, 1)) * se
    low, high = mean - half, mean + half
    if bounds:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Interval(mean, float(low), float(high), "cluster", n)


def bootstrap_means(matrix: np.ndarray, groups: Sequence | None, n_boot: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Means of each row over ``n_boot`` resamples of the columns (items), or of whole
    clusters when items share groups. ``matrix``: models × items; returns n_boot × models."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
    index = _clusters(groups, matrix.shape[1])
    g = index.max() + 1
    sums = np.stack([np.bincount(index, weights=row, minlength=g) for row in matrix])
    sizes = np.bincount(index, minlength=g).astype(float)
    draws = rng.integers(0, g, size=(n_boot, g))
    return sums[:, draws].sum(axis=2).T / sizes[draws].sum(axis=1)[:, None]


def bootstrap_interval(values: np.ndarray, groups: Sequence | None = None,
                       alpha: float = ALPHA, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    means = bootstrap_means(values[None, :], groups, n_boot, rng_for(seed))[:, 0]
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(values.mean()), float(low), float(high), "bootstrap", len(values))


def mean_interval(values: Sequence[float], *, binary: bool, groups: Sequence | None = None,
                  alpha: float = ALPHA, n_boot: int = N_BOOT, seed: int = 0,
                  bounds: tuple[float, float] | None = None) -> Interval:
    """Wilson for pass/fail items, cluster-robust when items share groups, else bootstrap."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), "none", 0)
    if _has_shared_groups(groups):
        return cluster_interval(arr, groups, alpha, (0.0, 1.0) if binary else bounds)
    if binary and np.all((arr == 0) | (arr == 1)):
        low, high = wilson(arr.sum(), len(arr), alpha)
        return Interval(float(arr.mean()), low, high, "wilson", len(arr))
    return bootstrap_interval(arr, None, alpha, n_boot, seed)


# ---- two models on the same items ----------------------------------------------------------

def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """Items only a passed, items only b passed, and the exact two-sided p-value."""
    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_comparison(a: Sequence[float], b: Sequence[float], *, binary: bool,
                      groups: Sequence | None = None, alpha: float = ALPHA,
                      n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """a − b on the same items: the difference with a paired-bootstrap interval, and a
    p-value (McNemar's exact test for pass/fail items, else the paired bootstrap's)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape:
        raise ValueError("a paired comparison needs the same items for both models")
    diffs = bootstrap_means((a_arr - b_arr)[None, :], groups, n_boot, rng_for(seed))[:, 0]
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    out = {"diff": float(a_arr.mean() - b_arr.mean()), "low": float(low), "high": float(high),
           "n": len(a_arr)}
    pass_fail = np.all(np.isin(a_arr, (0, 1))) and np.all(np.isin(b_arr, (0, 1)))
    if binary and pass_fail and not _has_shared_groups(groups):
        only_a, only_b, p = mcnemar_exact(a_arr, b_arr)
        out.update(method="mcnemar-exact", p_value=p, only_a=only_a, only_b=only_b)
    else:
        p = 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))
        out.update(method="paired-bootstrap", p_value=float(min(1.0, p)))
    return out


# ---- the frontier gap ----------------------------------------------------------------------

def frontier_gaps(matrix: Sequence[Sequence[float]], *, groups: Sequence | None = None,
                  alpha: float = ALPHA, n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    """For each model (row; columns are the items all models answered): how far its mean is
    below the best model's, with an interval from a paired bootstrap in which the best model
    is chosen again in every replicate, so the winner's luck is not counted as its lead.

    ``tied`` is True when the model is the best in at least alpha/2 of the replicates, i.e.
    the interval's lower end is 0: a model truly at the frontier is called behind it in at
    most about alpha of runs (alpha/2 for each rival tied with it).
    """
    x = np.atleast_2d(np.asarray(matrix, dtype=float))
    means = x.mean(axis=1)
    boot = bootstrap_means(x, groups, n_boot, rng_for(seed))  # n_boot × models
    best = boot.max(axis=1, keepdims=True)
    gaps = best - boot
    share_best = (gaps <= 1e-12).mean(axis=0)
    out = []
    for m in range(x.shape[0]):
        tied = bool(share_best[m] >= alpha / 2)
        low = 0.0 if tied else float(np.quantile(gaps[:, m], alpha / 2))
        out.append({"gap": float(means.max() - means[m]), "low": low,
                    "high": float(np.quantile(gaps[:, m], 1 - alpha / 2)),
                    "share_best": float(share_best[m]), "tied": tied, "n": x.shape[1]})
    return out


# ---- Bradley–Terry -------------------------------------------------------------------------

def bt_fit(wins: np.ndarray, prior: float = 0.0, iterations: int = 10000,
           tol: float = 1e-10) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley–Terry likelihood of ``wins[..., i, j]``
    (how often i beat j; a tie counts half to each), by Hunter's MM algorithm. Leading
    dimensions are fitted at once (bootstrap replicates). ``prior`` adds that many virtual
    wins each way to every pair, which keeps the estimate finite when a model never wins."""
    w = np.asarray(wins, dtype=float) + prior
    k = w.shape[-1]
    eye = np.eye(k, dtype=bool)
    w = np.where(eye, 0.0, w)
    games = w + np.swapaxes(w, -1, -2)
    won = w.sum(axis=-1)
    p = np.ones(w.shape[:-1])
    for _ in range(iterations):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new = np.where(denom > 0, won / np.where(denom > 0, denom, 1), p)
        new = new / np.exp(np.log(np.maximum(new, 1e-300)).mean(axis=-1, keepdims=True))
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    theta = np.log(np.maximum(p, 1e-300))
    return theta - theta.mean(axis=-1, keepdims=True)


def wins_matrix(verdicts: Sequence[tuple[int, int, float]], k: int) -> np.ndarray:
    """(i, j, outcome) with outcome 1 (i won), 0 (j won) or 0.5 (tie) → wins[i, j]."""
    w = np.zeros((k, k))
    for i, j, outcome in verdicts:
        w[i, j] += outcome
        w[j, i] += 1 - outcome
    return w


def bradley_terry(verdicts: Sequence[tuple[str, int, int, float]], k: int, *,
                  alpha: float = ALPHA, n_boot: int = 500, seed: int = 0,
                  prior: float = 0.0) -> list[dict]:
    """Ratings from pairwise verdicts ``(item, i, j, outcome)``, with intervals from a
    bootstrap over items (all verdicts on one item are drawn together)."""
    items = sorted({v[0] for v in verdicts})
    per_item = np.zeros((len(items), k, k))
    where = {item: n for n, item in enumerate(items)}
    for item, i, j, outcome in verdicts:
        per_item[where[item], i, j] += outcome
        per_item[where[item], j, i] += 1 - outcome
    theta = bt_fit(per_item.sum(axis=0), prior=prior)
    draws = rng_for(seed).integers(0, len(items), size=(n_boot, len(items)))
    boot = bt_fit(per_item[draws].sum(axis=1), prior=max(prior, 1e-3))
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return [{"theta": float(theta[m]), "low": float(low[m]), "high": float(high[m]),
             "elo": float(1000 + 400 / np.log(10) * theta[m])} for m in range(k)]
