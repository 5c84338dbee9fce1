"""The console with 100,000 ledger rows: every page loads in under 300 ms (the best of
three loads, so that another process's burst on this shared machine does not decide it),
and the overview's queries use indexes, checked with EXPLAIN QUERY PLAN on SQLite and
EXPLAIN on PostgreSQL."""

from __future__ import annotations

import random
import re
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from modelmart.api import dashboards
from modelmart.store.base import open_store
from modelmart.store.records import UsageRecord
from modelmart.store.rows import usage_to_row
from modelmart.tenancy import accounts
from tests.console.test_console_auth import sign_in
from tests.harness import GatewayServer
from tests.marketplace.helpers import ensure_admin_key, poll, priced_catalog
from tests.pg import postgres_server, run_async

ROWS = 100_000
DAYS = 60
MODELS = ("oa-list", "oa-markup", "an-list", "an-markup")


async def seed(url: str, rows: int = ROWS, now: float | None = None) -> list[int]:
    """40 customers with 2 keys each, ``rows`` requests over the last 60 days (time-ordered,
    as a ledger is written); returns the customer ids."""
    now = time.time() if now is None else now
    store = await open_store(url)
    try:
        keys = []
        for c in range(40):
            customer = await accounts.create_customer(store, f"load-{c:02d}")
            for _ in range(2):
                key, _ = await accounts.create_key(store, customer.name)
                keys.append((customer.id, key.id, MODELS[key.id % 4]))
        rnd = random.Random(1)
        times = sorted(now - rnd.random() * DAYS * 86400 for _ in range(rows))
        batch = []
        for i, at in enumerate(times):
            cid, kid, model = rnd.choice(keys)
            status = rnd.choices(("ok", "error", "refused"), (96, 2, 2))[0]
            billed = status == "ok"
            batch.append(usage_to_row(UsageRecord(
                request_id=f"load-{i}", created_at=at, customer_id=cid, key_id=kid,
                model=model, deployment=f"{model}/x-0", provider=model[:2] + "-prov",
                surface="openai", stream=False, status=status,
                input_tokens=rnd.randrange(50, 2000) if billed else 0,
                output_tokens=rnd.randrange(10, 500) if billed else 0,
                cost_pico=rnd.randrange(10**8, 10**10) if billed else 0,
                price_pico=rnd.randrange(10**10, 2 * 10**10) if billed else 0,
                latency_ms=12.5)))
            if len(batch) == 5000:
                await store.insert_usage_rows(batch)
                batch = []
        await store.insert_usage_rows(batch)
        return sorted({k[0] for k in keys})
    finally:
        await store.close()


@pytest.fixture(scope="module")
def loaded(fake_openai, fake_anthropic):
    tmp = tempfile.TemporaryDirectory(prefix="mm-speed-")
    db = f"sqlite:///{Path(tmp.name) / 'speed.db'}"
    admin_key = ensure_admin_key(db)
    customers = run_async(seed(db))
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic), database_url=db).start()
    server.admin_key = admin_key
    server.customers = customers
    server.app.console.sessions.attempts_per_minute = 10_000
    yield server
    server.stop()
    tmp.cleanup()


PAGES = ("/console/overview", "/console/overview?since=2000-01-01&until=2001-01-01",
         "/console/catalog", "/console/customers", "/console/customers/load-07",
         "/console/usage", "/console/usage?customer=load-03&status=ok",
         "/console/usage?model=an-list", "/console/margins", "/console/playground",
         "/console/leaderboard", "/console/api/health")


def _best_of_three(client: httpx.Client, path: str) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        resp = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200, (path, resp.status_code)
    return min(times)


def test_pages_load_in_under_300_ms_with_100k_ledger_rows(loaded):
    assert run_async(_count(loaded.database_url)) == ROWS
    operator = sign_in(loaded, loaded.admin_key)
    timings = {path: _best_of_three(operator, path) for path in PAGES}
    key = run_async(_a_key(loaded.database_url, "load-05"))
    poll(lambda: loaded.app.keys.lookup(key), 2.0, 0.05, "the server to load the new key")
    customer = sign_in(loaded, key)
    for path in ("/console/me", "/console/me/keys", "/console/me/models", "/console/usage"):
        timings["customer " + path] = _best_of_three(customer, path)
    print("\n" + "\n".join(f"{ms:7.1f} ms  {path}" for path, ms in timings.items()))
    slow = {p: round(ms) for p, ms in timings.items() if ms >= 300}
    assert not slow, slow
    totals = operator.get("/console/api/overview").json()["windows"]["range"]
    assert totals["requests"] == run_async(_count(loaded.database_url, since=True))


async def _count(url: str, since: bool = False) -> int:
    store = await open_store(url)
    try:
        if not since:
            return await store.count_usage()
        start, _ = dashboards.default_range(time.time())
        return (await store._one("SELECT COUNT(*) FROM usage WHERE created_at >= ?",
                                 (start,)))[0]
    finally:
        await store.close()


async def _a_key(url: str, customer: str) -> str:
    store = await open_store(url)
    try:
        return (await accounts.create_key(store, customer, rpm=100))[1]
    finally:
        await store.close()


def test_margins_and_statements_from_the_rollup_equal_those_from_the_rows(loaded):
    from modelmart.metering import reports

    async def both():
        store = await open_store(loaded.database_url)
        try:
            rollup = dashboards.Rollup(store)
            out = []
            for months_ago in (0, 1, 2):
                month = time.strftime("%Y-%m", time.gmtime(time.time() - months_ago * 28 * 86400))
                out.append((await reports.margins(store, month),
                            await reports.margins(rollup, month)))
                out.append(((await reports.statement(store, "load-09", month)).to_dict(),
                            (await reports.statement(rollup, "load-09", month)).to_dict()))
            return out
        finally:
            await store.close()
    for from_rows, from_rollup in run_async(both()):
        assert from_rows == from_rollup


# ---- the queries' plans -----------------------------------------------------------------

class _Recorder:
    """The App's parts that dashboards.overview reads, around a store that records its SQL."""

    def __init__(self, store) -> None:
        self.store = store
        self.queries: list[tuple[str, list]] = []
        inner_all = store._all

        async def recording(sql, params=()):
            self.queries.append((sql, list(params)))
            return await inner_all(sql, params)
        store._all = recording


async def _overview_queries(store, customer_id: int) -> list[tuple[str, list]]:
    app = _Recorder(store)
    await dashboards.overview(app, None)
    await dashboards.overview(app, customer_id)
    return [(sql, params) for sql, params in app.queries if " usage" in sql]


async def _sqlite_plans(url: str, customer_id: int) -> list[tuple[str, list[str]]]:
    store = await open_store(url)
    try:
        out = []
        for sql, params in await _overview_queries(store, customer_id):
            rows = await store._run(lambda c: c.execute("EXPLAIN QUERY PLAN " + sql,
                                                        params).fetchall())
            out.append((sql, [r[-1] for r in rows]))
        return out
    finally:
        await store.close()


def test_overview_queries_use_indexes_on_sqlite(loaded):
    plans = run_async(_sqlite_plans(loaded.database_url, loaded.customers[3]))
    assert len(plans) >= 10
    for sql, lines in plans:
        scans = [line for line in lines if line.startswith("SCAN")]
        assert not scans, (sql, lines)
        assert any("USING" in line and ("INDEX" in line or "PRIMARY KEY" in line)
                   for line in lines), (sql, lines)


async def _postgres_plans(url: str, customer_id: int) -> list[tuple[str, list, str, str]]:
    from modelmart.store.queries import numbered

    store = await open_store(url)
    try:
        await store._pool.execute("ANALYZE")
        out = []
        for sql, params in await _overview_queries(store, customer_id):
            async with store._pool.acquire() as conn:
                plan = "\n".join(r[0] for r in await conn.fetch(
                    "EXPLAIN " + numbered(sql), *params))
                await conn.execute("SET enable_seqscan = off")
                forced = "\n".join(r[0] for r in await conn.fetch(
                    "EXPLAIN " + numbered(sql), *params))
                await conn.execute("RESET enable_seqscan")
            out.append((sql, params, plan, forced))
        return out
    finally:
        await store.close()


@pytest.fixture(scope="module")
def loaded_postgres():
    with postgres_server("speed") as url:
        customers = run_async(seed(url))
        yield url, customers


def test_overview_queries_use_indexes_on_postgres(loaded_postgres):
    url, customers = loaded_postgres
    plans = run_async(_postgres_plans(url, customers[3]))
    assert len(plans) >= 10
    for sql, params, plan, forced in plans:
        # every query has an index it can use: with sequential scans priced out, none is left
        assert "Seq Scan" not in forced, (sql, forced)
        # and the planner picks one by itself where the window is narrow: today, or one
        # customer (a month of every customer's rows is most of a small table: there a
        # sequential scan of usage_daily is the right plan)
        if _narrow(sql, params):
            assert re.search(r"Index (Only )?Scan|Bitmap Index Scan", plan), (sql, plan)
    assert sum(_narrow(sql, params) for sql, params, _, _ in plans) >= 6


def _narrow(sql: str, params: list) -> bool:
    if "customer_id = ?" in sql:
        return True
    days = [p for p in params if isinstance(p, int) and 10_000 < p < 100_000]  # day numbers
    return len(days) == 2 and days[1] - days[0] <= 1
