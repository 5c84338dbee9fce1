"""The evaluation tables' DDL (migration ``0003_evals`` in ``migrations.py``), kept apart so
the shared migration list grows by one line. Types in ``{braces}`` as in migrations.py."""

from __future__ import annotations

EVAL_TABLES: tuple[str, ...] = (
    # fingerprint: a hash of what decides the run's records (task version, models, options),
    # so the same command finds its unfinished run and resumes it.
    """CREATE TABLE eval_runs (
        id {pk},
        task TEXT NOT NULL,
        task_version TEXT NOT NULL,
        models {json} NOT NULL,
        params {json} NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at {real} NOT NULL,
        updated_at {real} NOT NULL,
        finished_at {real},
        budget_pico {int},
        key_ids {json},
        wall_s {real} NOT NULL DEFAULT 0,
        note TEXT)""",
    "CREATE INDEX eval_runs_fingerprint ON eval_runs (fingerprint, status)",
    # One row per (run, model, item, epoch), written once. score NULL: not scored, and
    # error_kind says why (an infrastructure failure after retries, a judge without a
    # rating): such rows are excluded from every statistic, never counted as wrong.
    # Tokens, cost and latency are the ledger's, summed over the item's requests.
    """CREATE TABLE eval_records (
        id {pk},
        run_id {int} NOT NULL REFERENCES eval_runs(id),
        task TEXT NOT NULL,
        task_version TEXT NOT NULL,
        model TEXT NOT NULL,
        deployment TEXT,
        item TEXT NOT NULL,
        epoch {int} NOT NULL,
        item_group TEXT,
        prompt_hash TEXT NOT NULL,
        prompt TEXT,
        output TEXT,
        score {real},
        answer TEXT,
        detail {json},
        input_tokens {int} NOT NULL DEFAULT 0,
        output_tokens {int} NOT NULL DEFAULT 0,
        cost_pico {int} NOT NULL DEFAULT 0,
        price_pico {int} NOT NULL DEFAULT 0,
        judge_price_pico {int} NOT NULL DEFAULT 0,
        latency_ms {real},
        error_kind TEXT,
        attempts {int} NOT NULL DEFAULT 1,
        request_id TEXT,
        request_ids {json},
        created_at {real} NOT NULL,
        UNIQUE (run_id, model, item, epoch))""",
    "CREATE INDEX eval_records_task_model ON eval_records (task, model)",
    # Pairwise judgements (MT-bench pairwise): outcome 1 a won, 0 b won, 0.5 a tie.
    """CREATE TABLE eval_verdicts (
        id {pk},
        run_id {int} NOT NULL REFERENCES eval_runs(id),
        task TEXT NOT NULL,
        task_version TEXT NOT NULL,
        item TEXT NOT NULL,
        epoch {int} NOT NULL,
        model_a TEXT NOT NULL,
        model_b TEXT NOT NULL,
        judge TEXT NOT NULL,
        outcome {real},
        detail {json},
        price_pico {int} NOT NULL DEFAULT 0,
        created_at {real} NOT NULL,
        UNIQUE (run_id, item, epoch, model_a, model_b))""",
)
