"""Evaluation: tasks, solvers, scorers, the runner, statistics, the leaderboard, reports.

Every item goes through the gateway's own pipeline under an evaluation customer, so its
tokens, cost and latency come from the ledger; scores and ledger figures are stored per item
(``store/evals.py``) and every statistic is computed from those item-level records.
"""
