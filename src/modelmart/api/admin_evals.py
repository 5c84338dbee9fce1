"""The admin API's evaluation routes, under ``/admin/v1/evals``:

    GET /admin/v1/evals/runs                      runs (?task=)
    GET /admin/v1/evals/runs/{id}                 a run and its results (intervals, gaps, cost)
    GET /admin/v1/evals/runs/{id}/records         its item-level records (?model=&limit=&offset=)
    GET /admin/v1/evals/runs/{id}/report/{file}   summary.md, results.json, scores.svg,
                                                  frontier_gap.svg, quality_cost.svg
    GET /admin/v1/evals/leaderboard               every task (?task=&format=json|md)

``AdminAPI`` hands over any path under ``/admin/v1/evals`` after it has checked the admin
key; errors are ``GatewayError``s, which it renders as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.store.evals import EvalStore

from .http import Receive, Scope, Send, send_json

if TYPE_CHECKING:
    from .app import App

PREFIX = "/admin/v1/evals"
REPORT_FILES = {"summary.md": b"text/markdown; charset=utf-8",
                "results.json": b"application/json",
                "scores.svg": b"image/svg+xml", "frontier_gap.svg": b"image/svg+xml",
                "quality_cost.svg": b"image/svg+xml"}


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


_BOUNDS = {"run": (1, 2**63 - 1), "seed": (0, 2**32 - 1), "limit": (1, 1000),
           "offset": (0, 2**63 - 1)}


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    """A decimal integer within the bounds the OpenAPI document states (ASCII digits only:
    ``int()`` would take other scripts' digits too)."""
    if value is None:  # ?seed= (empty) is not a missing seed: it is refused below
        return default
    low, high = _BOUNDS[name]
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}", param=name)
    return int(value)


class EvalsAdmin:
    def __init__(self, app: "App") -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            raise NotFound(f"No admin route {scope['method']} {scope['path']}.")
        parts = [p for p in scope["path"][len(PREFIX):].split("/") if p]
        q = _query(scope)
        evals = EvalStore(self.app.store)
        if parts == ["runs"]:
            runs = await evals.list_runs(q.get("task") or None)
            await self._json(send, [self._run(r) for r in runs])
        elif parts == ["leaderboard"]:
            await self._leaderboard(send, evals, q)
        elif len(parts) >= 2 and parts[0] == "runs":
            await self._one_run(send, evals, parts[1:], q)
        else:
            raise NotFound(f"No admin route GET {scope['path']}.")

    async def _json(self, send: Send, body) -> None:
        await send_json(send, 200, orjson.dumps(body, default=str))

    async def _text(self, send: Send, body: str, content_type: bytes) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body.encode()})

    @staticmethod
    def _run(run) -> dict:
        return {"id": run.id, "task": run.task, "version": run.task_version,
                "models": run.models, "params": run.params, "status": run.status,
                "created_at": run.created_at, "finished_at": run.finished_at,
                "wall_s": run.wall_s, "budget_pico": run.budget_pico}

    async def _leaderboard(self, send: Send, evals: EvalStore, q: dict) -> None:
        from modelmart.evals.leaderboard import leaderboard, render

        fmt = q.get("format", "json")
        if fmt not in ("json", "md"):
            raise InvalidRequest("format must be json or md", param="format")
        board = await leaderboard(evals, task=q.get("task"),
                                  seed=_int(q.get("seed"), "seed", 0))
        if fmt == "md":
            await self._text(send, render(board, "md"), b"text/markdown; charset=utf-8")
        else:
            await self._json(send, board)

    async def _one_run(self, send: Send, evals: EvalStore, parts: list[str], q: dict) -> None:
        from modelmart.evals.report import build_report
        from modelmart.evals.results import run_result

        run_id = _int(parts[0], "run")
        run = await evals.get_run(run_id)
        if run is None:
            raise NotFound(f"no evaluation run {parts[0]}", param="run")
        seed = _int(q.get("seed"), "seed", 0)
        if len(parts) == 1:
            result = await run_result(evals, run, seed)
            await self._json(send, {"run": self._run(run), "result": result.to_dict()})
        elif parts[1:] == ["records"]:
            records = await evals.records(run_id=run.id)
            if q.get("model"):
                records = [r for r in records if r.model == q["model"]]
            offset = _int(q.get("offset"), "offset", 0)
            limit = _int(q.get("limit"), "limit", 1000)
            await self._json(send, [_record(r) for r in records[offset:offset + limit]])
        elif len(parts) == 3 and parts[1] == "report" and parts[2] in REPORT_FILES:
            files = await build_report(evals, run.id, seed)
            await self._text(send, files[parts[2]], REPORT_FILES[parts[2]])
        else:
            raise NotFound(f"No admin route under run {run.id}: use records or "
                           f"report/{{{','.join(REPORT_FILES)}}}")


def _record(r) -> dict:
    from dataclasses import asdict
    return asdict(r)


def openapi_paths(prefix: str = "/admin/v1") -> dict:
    """The OpenAPI entries of these routes, for ``admin_spec.openapi_spec``."""
    from .admin_spec import _op

    integer = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    run = ("run", "path", True, {**integer, "minimum": 1}, "evaluation run id")
    seed = ("seed", "query", False, {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
            "bootstrap seed (default 0)")
    return {
        f"{prefix}/evals/runs": {"get": _op("Evaluation runs", params=[
            ("task", "query", False, "only this task's runs")])},
        f"{prefix}/evals/runs/{{run}}": {"get": _op(
            "A run with its results: per model the mean and 95% interval, the gap to the "
            "frontier with its interval and tied flag, price and latency per item, paired "
            "comparisons", params=[run, seed])},
        f"{prefix}/evals/runs/{{run}}/records": {"get": _op(
            "A run's item-level records (prompt, output, score, tokens, cost, latency, "
            "request ids)", params=[run, ("model", "query", False, "one model's records"),
                                   ("limit", "query", False, {**integer, "minimum": 1, "maximum": 1000},
                                    "at most this many (1000)"),
                                   ("offset", "query", False, integer, "skip this many")])},
        f"{prefix}/evals/runs/{{run}}/report/{{file}}": {"get": _op(
            "A report file: summary.md, results.json, scores.svg, frontier_gap.svg or "
            "quality_cost.svg", also=("text/markdown", "image/svg+xml"), params=[run, ("file", "path", True, {"enum": ["summary.md", "results.json", "scores.svg",
                                                     "frontier_gap.svg", "quality_cost.svg"]},
                        "the file's name"), seed])},
        f"{prefix}/evals/leaderboard": {"get": _op(
            "Every task's newest results per model", also=("text/markdown",), params=[
                ("task", "query", False, "one task"),
                ("format", "query", False, {"enum": ["json", "md"]}, "json (default) or md"),
                seed])},
    }
