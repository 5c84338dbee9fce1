"""Issue #3 on PostgreSQL: the gateway bills a request into a PostgreSQL ledger, and the
CLI's statement for that database shows it; a PostgreSQL outage (issue #15)."""

from __future__ import annotations

import csv
import io
import time

import httpx
import openai

from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import (M, all_usage, cli, cli_json, ensure_admin_key, month_of,
                                       poll, priced_catalog, wait_usage)
from tests.pg import PostgresProcess


def test_gateway_on_postgresql_bills_and_the_cli_statement_shows_it(
        postgres_url, fake_openai, fake_anthropic, scripted):
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic),
                           database_url=postgres_url).start()
    try:
        fake_openai.queue(Reply(text="pg", input_tokens=1234, cache_read_tokens=100,
                                output_tokens=56, reasoning_tokens=6))
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="oa-list", messages=[{"role": "user", "content": "on postgres"}])
        month = month_of(time.time())
        # list price 2.00 in, 0.50 cache read, 8.00 out; cost 1.00, 0.25, 4.00
        price = 1234 * 2 * M + 100 * M // 2 + 56 * 8 * M
        cost = 1234 * M + 100 * M // 4 + 56 * 4 * M
        assert price == 2_966_000_000
        row = wait_usage(postgres_url, raw.headers["x-request-id"])
        assert (row.status, row.price_pico, row.cost_pico) == ("ok", price, cost)
        assert (row.input_tokens, row.cache_read_tokens, row.output_tokens,
                row.reasoning_tokens) == (1234, 100, 56, 6)
        assert raw.headers["x-modelmart-cost"] == "0.002966000000"
    finally:
        server.stop()

    st = cli_json("statement", "--customer", "acme", "--month", month, "--database", postgres_url)
    assert st["lines"] == [{"model": "oa-list", "requests": 1, "input_tokens": 1234,
                            "output_tokens": 56, "cache_read_tokens": 100,
                            "cache_write_tokens": 0, "reasoning_tokens": 6,
                            "price_pico": price, "price_usd": "0.002966000000"}]
    out = cli("statement", "--customer", "acme", "--month", month, "--csv",
              "--database", postgres_url).stdout
    table = {r["model"]: r for r in csv.DictReader(io.StringIO(out))}
    assert table["oa-list"]["price_usd"] == table["TOTAL"]["price_usd"] == "0.002966000000"
    text = cli("statement", "--customer", "acme", "--month", month,
               "--database", postgres_url).stdout
    assert "oa-list" in text and "0.002966000000" in text


def test_postgresql_outage_keys_from_memory_usage_spooled_admin_503(fake_openai,
                                                                    fake_anthropic, scripted):
    """PostgreSQL stops mid-way: known keys keep working (from memory), the admin key still
    authenticates and the admin API answers 503 (not 500, not 401), /ready says degraded;
    the usage of the outage waits in the journal and lands exactly once when the database
    is back, and the admin API answers again."""
    pg = PostgresProcess()
    server = None
    try:
        server = GatewayServer(priced_catalog(fake_openai, fake_anthropic),
                               database_url=pg.url).start()
        admin = {"Authorization": f"Bearer {ensure_admin_key(pg.url)}"}
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)

        def ask() -> str:
            fake_openai.queue(Reply(text="ok", input_tokens=10, output_tokens=2))
            raw = client.chat.completions.with_raw_response.create(
                model="oa-list", messages=[{"role": "user", "content": "hi"}])
            assert raw.http_response.status_code == 200
            return raw.headers["x-request-id"]

        poll(lambda: httpx.get(f"{server.url}/admin/v1/customers", headers=admin).status_code
             == 200, 5, what="the admin key in the key cache")
        before = ask()
        wait_usage(pg.url, before)
        pg.stop()
        during = [ask() for _ in range(5)]
        resp = httpx.get(f"{server.url}/admin/v1/customers", headers=admin, timeout=30)
        assert resp.status_code == 503, resp.text
        assert "database is unavailable" in resp.json()["error"]["message"]
        assert httpx.get(f"{server.url}/admin/v1/customers",
                         headers={"Authorization": "Bearer mm-wrong"}).status_code == 401
        ready = httpx.get(f"{server.url}/ready", timeout=30)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        assert ready.json()["checks"]["store"].startswith("degraded")
        assert server.app.recorder.pending() == 5
        pg.start()
        for rid in during:
            wait_usage(pg.url, rid, timeout=30)
        rows = [r.request_id for r in all_usage(pg.url)]
        assert sorted(rows) == sorted([before, *during])  # each once
        assert httpx.get(f"{server.url}/admin/v1/customers", headers=admin).status_code == 200
        assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
    finally:
        if server is not None:
            server.stop()
        pg.close()
