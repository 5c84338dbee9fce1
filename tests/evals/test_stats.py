"""The statistics on simulated models whose per-item success probabilities are known.

Each simulated run draws its items afresh from a population (item difficulty b ~ N(0, 1),
a model of ability t passes with probability sigmoid(t - b)), so the true value of a model
is the population mean E[sigmoid(t - b)], the quantity an interval claims to cover.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelmart.evals import stats

RUNS = 1000


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def true_mean(ability: float) -> float:
    b = np.random.default_rng(12345).standard_normal(2_000_000)
    return float(sigmoid(ability - b).mean())


def binary_run(rng, abilities, n_items, groups=0):
    """models × items pass/fail; with ``groups``, items come in clusters sharing an effect."""
    if groups:
        effects = np.repeat(rng.standard_normal(groups), n_items // groups)
        b = effects + 0.6 * rng.standard_normal(n_items)
    else:
        b = rng.standard_normal(n_items)
    p = sigmoid(np.asarray(abilities)[:, None] - b[None, :])
    return (rng.random(p.shape) < p).astype(float)


def coverage(hits) -> float:
    return float(np.mean(hits))


def test_wilson_intervals_cover_the_truth_95_percent():
    rng = np.random.default_rng(1)
    truth = true_mean(0.8)
    hits = []
    for _ in range(RUNS):
        x = binary_run(rng, [0.8], 164)[0]
        iv = stats.mean_interval(x, binary=True)
        assert iv.method == "wilson"
        hits.append(iv.low <= truth <= iv.high)
    assert 0.93 <= coverage(hits) <= 0.97


def test_cluster_intervals_cover_the_truth_when_items_share_groups():
    rng = np.random.default_rng(2)
    # population mean with the clustered difficulty: b = u + 0.6 e
    b = np.random.default_rng(7).standard_normal(2_000_000) * np.sqrt(1 + 0.36)
    truth = float(sigmoid(0.3 - b).mean())
    groups = np.repeat(np.arange(40), 5)
    hits, naive_hits = [], []
    for _ in range(RUNS):
        x = binary_run(rng, [0.3], 200, groups=40)[0]
        iv = stats.mean_interval(x, binary=True, groups=groups)
        assert iv.method == "cluster"
        hits.append(iv.low <= truth <= iv.high)
        low, high = stats.wilson(x.sum(), len(x))
        naive_hits.append(low <= truth <= high)
    assert 0.93 <= coverage(hits) <= 0.97
    assert coverage(naive_hits) < 0.90  # ignoring the clusters would overstate certainty


def test_bootstrap_intervals_cover_the_truth_for_judge_scores():
    rng = np.random.default_rng(3)
    # a 1-10 rating: 1 + 9 * Beta(2, 3) rounded; the truth by simulation
    big = np.round(1 + 9 * np.random.default_rng(9).beta(2, 3, 2_000_000))
    truth = float(big.mean())
    hits = []
    for seed in range(RUNS):
        x = np.round(1 + 9 * rng.beta(2, 3, 80))
        iv = stats.mean_interval(x, binary=False, n_boot=1000, seed=seed)
        assert iv.method == "bootstrap"
        hits.append(iv.low <= truth <= iv.high)
    assert 0.93 <= coverage(hits) <= 0.97


def test_intervals_are_reproducible_with_a_seed():
    x = np.round(1 + 9 * np.random.default_rng(0).beta(2, 3, 50))
    a = stats.mean_interval(x, binary=False, seed=5)
    assert a == stats.mean_interval(x, binary=False, seed=5)
    assert a != stats.mean_interval(x, binary=False, seed=6)


def test_paired_comparison_uses_mcnemar_for_pass_fail():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0])
    b = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1])
    out = stats.paired_comparison(a, b, binary=True)
    assert out["method"] == "mcnemar-exact" and (out["only_a"], out["only_b"]) == (7, 1)
    assert out["p_value"] == pytest.approx(0.0703125)  # 2 * P(X <= 1), X ~ Bin(8, 1/2)
    cont = stats.paired_comparison(a * 3.0, b * 2.0, binary=False)
    assert cont["method"] == "paired-bootstrap" and cont["low"] <= cont["diff"] <= cont["high"]


def _frontier_runs(abilities, runs, seed):
    rng = np.random.default_rng(seed)
    for run in range(runs):
        yield stats.frontier_gaps(binary_run(rng, abilities, 164), n_boot=500, seed=run)


def test_frontier_gap_flag_errs_at_its_stated_rate():
    """Two models truly tied at the frontier and one 0.12 behind it: a frontier model is
    called behind in at most alpha of the runs, and the real gap is found."""
    wrongly_behind, found = [], []
    for gaps in _frontier_runs([1.0, 1.0, 0.35], 600, seed=4):
        wrongly_behind += [not gaps[0]["tied"], not gaps[1]["tied"]]
        found.append(not gaps[2]["tied"])
    assert 0.005 <= np.mean(wrongly_behind) <= stats.ALPHA
    assert np.mean(found) >= 0.9


def test_frontier_gap_interval_covers_the_true_gap():
    abilities = [1.0, 0.35, 0.2]
    true = [true_mean(a) for a in abilities]
    true_gaps = [max(true) - t for t in true]
    hits = {1: [], 2: []}
    for gaps in _frontier_runs(abilities, 600, seed=6):
        for m in hits:
            hits[m].append(gaps[m]["low"] <= true_gaps[m] <= gaps[m]["high"])
    for m in hits:
        assert 0.93 <= coverage(hits[m]) <= 0.97, (m, coverage(hits[m]))


def test_frontier_gap_rechooses_the_best_in_every_replicate():
    # two identical models: the observed winner's lead is luck, so neither is behind
    x = np.array([[1, 0, 1, 1, 0, 1, 0, 1, 1, 0] * 5, [1, 0, 1, 1, 0, 1, 0, 1, 0, 1] * 5])
    gaps = stats.frontier_gaps(x, n_boot=2000, seed=0)
    assert all(g["tied"] for g in gaps) and gaps[0]["gap"] == 0.0
    assert 0.2 < gaps[0]["share_best"] < 0.8


def test_bradley_terry_matches_choix():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(5)
    strengths = np.array([0.8, 0.2, 0.0, -0.5, -1.0])
    k = len(strengths)
    verdicts, pairs = [], []
    for item in range(300):
        i, j = rng.choice(k, 2, replace=False)
        p = sigmoid(strengths[i] - strengths[j])
        u = rng.random()
        outcome = 1.0 if u < p * 0.9 else 0.5 if u < p * 0.9 + 0.1 else 0.0
        verdicts.append((f"q{item}", int(i), int(j), outcome))
        # choix takes (winner, loser); a tie as one win each way, a win as two
        if outcome == 1.0:
            pairs += [(i, j), (i, j)]
        elif outcome == 0.0:
            pairs += [(j, i), (j, i)]
        else:
            pairs += [(i, j), (j, i)]
    ours = stats.bradley_terry(verdicts, k, n_boot=200, seed=0)
    theirs = choix.ilsr_pairwise(k, pairs, alpha=0.0)
    theirs = theirs - theirs.mean()
    assert np.allclose([r["theta"] for r in ours], theirs, atol=1e-4)
    assert all(r["low"] <= r["theta"] <= r["high"] for r in ours)
    assert ours[0]["theta"] > ours[-1]["theta"]
