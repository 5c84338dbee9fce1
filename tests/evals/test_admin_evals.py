"""The admin API's evaluation routes (api/admin_evals.py), behind the admin key, through
the admin API (AdminAPI hands /admin/v1/evals/ to EvalsAdmin), and their OpenAPI entries."""

from __future__ import annotations

import time

import httpx
import pytest

from modelmart.api.admin_evals import openapi_paths
from modelmart.api.admin_spec import openapi_spec
from modelmart.api.app import create_app
from modelmart.api.settings import Settings
from modelmart.catalog.loader import parse_catalog
from modelmart.store.evals import EvalRecord, EvalRun, EvalStore
from modelmart.tenancy import accounts


@pytest.fixture
async def admin(tmp_path):
    app = create_app(Settings(catalog=parse_catalog({"bundled_model": False, "models": {}}),
                              database_url=f"sqlite:///{tmp_path / 'mm.db'}",
                              journal_dir=str(tmp_path / "journal")))
    await app.startup()
    secret = await accounts.ensure_admin_key(app.store)
    await app.keys.reload()
    evals = EvalStore(app.store)
    now = time.time()
    run = await evals.create_run(EvalRun(0, "arith", "v1", ["a", "b"], {}, "fp", "done", now,
                                         now, wall_s=3.0))
    await evals.insert_records([
        EvalRecord(run.id, "arith", "v1", model, f"q{i}", 0, f"h{i}",
                   score=float(i % (2 if model == "a" else 3) == 0), price_pico=10**6,
                   latency_ms=5.0, created_at=now)
        for model in ("a", "b") for i in range(30)])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.admin),
                               base_url="http://admin", headers={"authorization": f"Bearer {secret}"})
    yield client, run
    await client.aclose()
    await app.shutdown()


async def test_runs_results_records_reports_and_leaderboard(admin):
    client, run = admin
    runs = (await client.get("/admin/v1/evals/runs")).json()
    assert [r["id"] for r in runs] == [run.id]
    one = (await client.get(f"/admin/v1/evals/runs/{run.id}")).json()
    models = {m["model"]: m for m in one["result"]["models"]}
    assert models["a"]["mean"] == 0.5 and models["a"]["low"] < 0.5 < models["a"]["high"]
    assert models["a"]["tied"] is True and models["b"]["gap"] == pytest.approx(0.5 - 10 / 30)
    records = (await client.get(f"/admin/v1/evals/runs/{run.id}/records?model=b&limit=5")).json()
    assert len(records) == 5 and {r["model"] for r in records} == {"b"}
    svg = await client.get(f"/admin/v1/evals/runs/{run.id}/report/scores.svg")
    assert svg.headers["content-type"] == "image/svg+xml" and svg.text.startswith("<svg")
    md = await client.get(f"/admin/v1/evals/runs/{run.id}/report/summary.md")
    assert "# arith: evaluation run" in md.text
    board = (await client.get("/admin/v1/evals/leaderboard")).json()
    assert board[0]["task"] == "arith" and len(board[0]["models"]) == 2
    assert "| a |" in (await client.get("/admin/v1/evals/leaderboard?format=md")).text


async def test_errors_and_authentication(admin):
    client, run = admin
    assert (await client.get("/admin/v1/evals/runs/999")).status_code == 404
    bad = await client.get("/admin/v1/evals/runs/abc")
    assert bad.status_code == 400 and "run must be an integer" in bad.json()["error"]["message"]
    assert (await client.get(f"/admin/v1/evals/runs/{run.id}/report/x.svg")).status_code == 404
    assert (await client.get("/admin/v1/evals/leaderboard?format=xml")).status_code == 400
    anonymous = await client.get("/admin/v1/evals/runs", headers={"authorization": ""})
    assert anonymous.status_code == 401


def test_openapi_entries_validate():
    from openapi_spec_validator import validate

    spec = dict(openapi_spec())
    spec["paths"] = {**spec["paths"], **openapi_paths()}
    validate(spec)
    assert "/admin/v1/evals/runs/{run}/report/{file}" in spec["paths"]
