"""Evaluation runs, item-level records and pairwise verdicts in the gateway's store.

``EvalStore(store)`` wraps an open Store (SQLite or PostgreSQL). Reads go through the
backend's shared ``_all``/``_one`` (``?`` placeholders); the few writes run through
``_execute``, which picks the backend's own transaction path, so the backends need no
eval-specific code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

from modelmart.store import queries as q
from modelmart.store.base import Store
from modelmart.store.rows import dump_json, load_json

RUN_COLUMNS = ("task", "task_version", "models", "params", "fingerprint", "status",
               "created_at", "updated_at", "finished_at", "budget_pico", "key_ids", "wall_s",
               "note")
JSON_RUN = {"models", "params", "key_ids"}


@dataclass(slots=True)
class EvalRun:
    id: int
    task: str
    task_version: str
    models: list[str]
    params: dict
    fingerprint: str
    status: str  # "running" | "done" | "budget" | "interrupted" | "failed"
    created_at: float
    updated_at: float
    finished_at: float | None = None
    budget_pico: int | None = None
    key_ids: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    note: str | None = None


@dataclass(slots=True)
class EvalRecord:
    run_id: int
    task: str
    task_version: str
    model: str
    item: str
    epoch: int
    prompt_hash: str
    deployment: str | None = None
    item_group: str | None = None
    prompt: str | None = None
    output: str | None = None
    score: float | None = None
    answer: str | None = None
    detail: dict = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_pico: int = 0
    price_pico: int = 0
    judge_price_pico: int = 0
    latency_ms: float | None = None
    error_kind: str | None = None
    attempts: int = 1
    request_id: str | None = None
    request_ids: list[str] = field(default_factory=list)
    created_at: float = 0.0


@dataclass(slots=True)
class Verdict:
    run_id: int
    task: str
    task_version: str
    item: str
    epoch: int
    model_a: str
    model_b: str
    judge: str
    outcome: float | None  # 1: a won, 0: b won, 0.5: tie; None: the judge did not decide
    detail: dict = field(default_factory=dict)
    price_pico: int = 0
    created_at: float = 0.0


RECORD_COLUMNS = tuple(f.name for f in fields(EvalRecord))
JSON_RECORD = {"detail", "request_ids"}
VERDICT_COLUMNS = tuple(f.name for f in fields(Verdict))
JSON_VERDICT = {"detail"}


def _to_row(obj, columns, json_cols) -> tuple:
    return tuple(dump_json(getattr(obj, c)) if c in json_cols else getattr(obj, c)
                 for c in columns)


def _from_row(cls, columns, json_cols, row) -> Any:
    values = dict(zip(columns, row))
    for c in json_cols:
        values[c] = load_json(values[c]) if isinstance(values[c], str) else values[c]
    return cls(**values)


class EvalStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _execute(self, sql: str, params: tuple = ()) -> Any:
        """One write statement; returns the first column of its first row (RETURNING)."""
        store = self.store
        if hasattr(store, "_pool"):  # PostgreSQL
            return await store._pool.fetchval(q.numbered(sql), *params)

        def run(conn):
            row = conn.execute(sql, params).fetchone()
            return row[0] if row else None
        return await store._write(run)

    async def _insert_many(self, table: str, columns: tuple, rows: list[tuple],
                           conflict: str) -> None:
        marks = ", ".join("?" * len(columns))
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
               f"ON CONFLICT ({conflict}) DO NOTHING")
        store = self.store
        if hasattr(store, "_pool"):
            async with store._pool.acquire() as conn, conn.transaction():
                await conn.executemany(q.numbered(sql), rows)
            return
        await store._write(lambda conn: conn.executemany(sql, rows))

    # ---- runs ---------------------------------------------------------------------------
    async def create_run(self, run: EvalRun) -> EvalRun:
        cols = RUN_COLUMNS
        marks = ", ".join("?" * len(cols))
        run.id = await self._execute(
            f"INSERT INTO eval_runs ({', '.join(cols)}) VALUES ({marks}) RETURNING id",
            _to_row(run, cols, JSON_RUN))
        return run

    async def update_run(self, run: EvalRun) -> None:
        run.updated_at = time.time()
        sets = ", ".join(f"{c} = ?" for c in RUN_COLUMNS)
        await self._execute(f"UPDATE eval_runs SET {sets} WHERE id = ?",
                            (*_to_row(run, RUN_COLUMNS, JSON_RUN), run.id))

    async def get_run(self, run_id: int) -> EvalRun | None:
        row = await self.store._one(f"SELECT id, {', '.join(RUN_COLUMNS)} FROM eval_runs "
                                    "WHERE id = ?", (int(run_id),))
        return _from_row(EvalRun, ("id", *RUN_COLUMNS), JSON_RUN, row) if row else None

    async def list_runs(self, task: str | None = None) -> list[EvalRun]:
        sql = f"SELECT id, {', '.join(RUN_COLUMNS)} FROM eval_runs"
        params: tuple = ()
        if task:
            sql, params = sql + " WHERE task = ?", (task,)
        rows = await self.store._all(sql + " ORDER BY id", params)
        return [_from_row(EvalRun, ("id", *RUN_COLUMNS), JSON_RUN, r) for r in rows]

    async def unfinished_run(self, fingerprint: str) -> EvalRun | None:
        row = await self.store._one(
            f"SELECT id, {', '.join(RUN_COLUMNS)} FROM eval_runs WHERE fingerprint = ? "
            "AND status IN ('running', 'interrupted') ORDER BY id DESC", (fingerprint,))
        return _from_row(EvalRun, ("id", *RUN_COLUMNS), JSON_RUN, row) if row else None

    # ---- records ------------------------------------------------------------------------
    async def insert_records(self, records: list[EvalRecord]) -> None:
        """Idempotent: a (run, model, item, epoch) already stored keeps its first record."""
        if records:
            await self._insert_many("eval_records", RECORD_COLUMNS,
                                    [_to_row(r, RECORD_COLUMNS, JSON_RECORD) for r in records],
                                    "run_id, model, item, epoch")

    async def records(self, *, run_id: int | None = None, task: str | None = None,
                      task_version: str | None = None) -> list[EvalRecord]:
        conds, params = [], []
        for column, value in (("run_id", run_id), ("task", task),
                              ("task_version", task_version)):
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        where = " WHERE " + " AND ".join(conds) if conds else ""
        rows = await self.store._all(f"SELECT {', '.join(RECORD_COLUMNS)} FROM eval_records"
                                     f"{where} ORDER BY id", tuple(params))
        return [_from_row(EvalRecord, RECORD_COLUMNS, JSON_RECORD, r) for r in rows]

    async def done_keys(self, run_id: int) -> set[tuple[str, str, int]]:
        """(model, item, epoch) of every stored record of a run: what a resume skips."""
        rows = await self.store._all("SELECT model, item, epoch FROM eval_records "
                                     "WHERE run_id = ?", (run_id,))
        return {(r[0], r[1], int(r[2])) for r in rows}

    # ---- verdicts -----------------------------------------------------------------------
    async def insert_verdicts(self, verdicts: list[Verdict]) -> None:
        if verdicts:
            await self._insert_many("eval_verdicts", VERDICT_COLUMNS,
                                    [_to_row(v, VERDICT_COLUMNS, JSON_VERDICT)
                                     for v in verdicts],
                                    "run_id, item, epoch, model_a, model_b")

    async def verdicts(self, *, run_id: int | None = None,
                       task: str | None = None) -> list[Verdict]:
        conds, params = [], []
        if run_id is not None:
            conds.append("run_id = ?")
            params.append(run_id)
        if task is not None:
            conds.append("task = ?")
            params.append(task)
        where = " WHERE " + " AND ".join(conds) if conds else ""
        rows = await self.store._all(f"SELECT {', '.join(VERDICT_COLUMNS)} FROM eval_verdicts"
                                     f"{where} ORDER BY id", tuple(params))
        return [_from_row(Verdict, VERDICT_COLUMNS, JSON_VERDICT, r) for r in rows]
