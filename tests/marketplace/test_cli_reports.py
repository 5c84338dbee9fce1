"""Issue #3, the ledger through the CLI: ``modelmart usage``, ``statement`` and ``margins``
report exactly what the gateway billed (figures computed by hand)."""

from __future__ import annotations

import csv
import io
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anthropic
import openai
import pytest

from modelmart.store.records import UsageRecord
from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import (
    M, all_usage, cli, cli_json, cli_key, day_of, insert_usage, month_of, poll, priced_catalog,
)

# acme:  oa-list  10 in, 5 out               price 2.00/8.00      cost 1.00/4.00
ACME_OA = (10 * 2 * M + 5 * 8 * M, 10 * M + 5 * 4 * M)  # (price, cost) = (60e6, 30e6)
# acme:  an-list  20 in, 8 cache write, 3 out price 4.00/5.00/20.00 cost 3.00/3.75/15.00
ACME_AN = (20 * 4 * M + 8 * 5 * M + 3 * 20 * M, 20 * 3 * M + 8 * 375 * M // 100 + 3 * 15 * M)
# wayne: an-markup 4 in, 100 cache read, 2 out; cost 3.00/0.30/15.00, price cost × 1.25
WAYNE_COST = 4 * 3 * M + 100 * 3 * M // 10 + 2 * 15 * M
WAYNE_AN = (WAYNE_COST * 5 // 4, WAYNE_COST)
assert ACME_OA == (60_000_000, 30_000_000)
assert ACME_AN == (180_000_000, 135_000_000)
assert WAYNE_AN == (90_000_000, 72_000_000)
LAST_MONTH = (1_000_000, 500_000)  # a row written straight into last month's ledger


@pytest.fixture(scope="module")
def billed(fake_openai, fake_anthropic):
    """A gateway with its own database, three billed requests and one older row."""
    tmp = tempfile.TemporaryDirectory(prefix="mm-cli-")
    db = f"sqlite:///{Path(tmp.name) / 'cli.db'}"
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic), database_url=db).start()
    try:
        cli("customers", "create", "wayne", "--database", db)
        wayne = cli_key(db, "wayne")["secret"]
        poll(lambda: server.app.keys.lookup(wayne), 2.0, 0.02, "the CLI key to load")
        for fake in (fake_openai, fake_anthropic):
            fake.replies.clear()
        fake_openai.queue(Reply(text="a", input_tokens=10, output_tokens=5))
        fake_anthropic.queue(Reply(text="b", input_tokens=20, cache_write_tokens=8, output_tokens=3),
                             Reply(text="c", input_tokens=4, cache_read_tokens=100, output_tokens=2))
        msg = [{"role": "user", "content": "bill"}]
        openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0) \
            .chat.completions.create(model="oa-list", messages=msg)
        anthropic.Anthropic(base_url=server.url, api_key=server.key, max_retries=0) \
            .messages.create(model="an-list", max_tokens=10, messages=msg)
        anthropic.Anthropic(base_url=server.url, api_key=wayne, max_retries=0) \
            .messages.create(model="an-markup", max_tokens=10, messages=msg)
        now = time.time()
        poll(lambda: len(all_usage(db)) == 3, 2.0, 0.05, "three ledger rows")
        acme_key = server.app.keys.lookup(server.key)
        first = datetime.fromtimestamp(now, timezone.utc).replace(day=1, hour=12, minute=0,
                                                                  second=0, microsecond=0)
        earlier = (first - timedelta(days=1)).timestamp()
        insert_usage(db, [UsageRecord(
            request_id=f"old-{uuid.uuid4().hex}", created_at=earlier,
            customer_id=acme_key.customer_id, key_id=acme_key.id, model="oa-list",
            deployment="oa-list/openai-0", provider="openai", surface="openai", stream=False,
            status="ok", input_tokens=1, output_tokens=1, price_pico=LAST_MONTH[0],
            cost_pico=LAST_MONTH[1])])
        yield {"db": db, "now": now, "earlier": earlier}
    finally:
        server.stop()
        tmp.cleanup()


def test_usage_by_model_and_day(billed):
    rows = cli_json("usage", "--by", "model,day", "--database", billed["db"])
    today, before = day_of(billed["now"]), day_of(billed["earlier"])
    got = {(r["model"], r["day"]): (r["requests"], r["price_pico"], r["cost_pico"],
                                    r["margin_pico"]) for r in rows}
    assert got == {
        ("oa-list", before): (1, *LAST_MONTH, LAST_MONTH[0] - LAST_MONTH[1]),
        ("oa-list", today): (1, *ACME_OA, ACME_OA[0] - ACME_OA[1]),
        ("an-list", today): (1, *ACME_AN, ACME_AN[0] - ACME_AN[1]),
        ("an-markup", today): (1, *WAYNE_AN, WAYNE_AN[0] - WAYNE_AN[1]),
    }
    an_list = next(r for r in rows if r["model"] == "an-list")
    assert (an_list["input_tokens"], an_list["cache_write_tokens"], an_list["output_tokens"]) == (
        20, 8, 3)
    assert (an_list["price_usd"], an_list["cost_usd"], an_list["margin_usd"]) == (
        "0.000180000000", "0.000135000000", "0.000045000000")

    (only,) = cli_json("usage", "--by", "model", "--customer", "wayne", "--database", billed["db"])
    assert (only["model"], only["requests"], only["price_pico"]) == ("an-markup", 1, WAYNE_AN[0])
    bad = cli("usage", "--by", "colour", "--database", billed["db"], check=False)
    assert bad.returncode == 2 and "colour" in bad.stderr


def test_statement_csv_and_json(billed):
    month = month_of(billed["now"])
    out = cli("statement", "--customer", "acme", "--month", month, "--csv",
              "--database", billed["db"]).stdout
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == ["model", "requests", "input_tokens", "output_tokens",
                              "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
                              "price_usd"]
    lines = {r["model"]: r for r in table}
    assert set(lines) == {"oa-list", "an-list", "TOTAL"}  # last month's row is not in it
    assert (lines["oa-list"]["requests"], lines["oa-list"]["price_usd"]) == ("1", "0.000060000000")
    assert lines["an-list"]["price_usd"] == "0.000180000000"
    assert (lines["TOTAL"]["requests"], lines["TOTAL"]["price_usd"]) == ("2", "0.000240000000")

    st = cli_json("statement", "--customer", "acme", "--month", month_of(billed["earlier"]),
                  "--database", billed["db"])
    assert st["total"]["price_pico"] == LAST_MONTH[0] and st["total"]["requests"] == 1
    missing = cli("statement", "--customer", "nobody", "--month", month, "--database",
                  billed["db"], check=False)
    assert missing.returncode == 2 and "nobody" in missing.stderr


def test_margins_by_provider_and_model(billed):
    data = cli_json("margins", "--month", month_of(billed["now"]), "--database", billed["db"])
    prov = {r["provider"]: r for r in data["by_provider"]}
    assert (prov["openai"]["requests"], prov["openai"]["revenue_pico"],
            prov["openai"]["cost_pico"], prov["openai"]["margin_pct"]) == (1, *ACME_OA, "50.00")
    an_rev, an_cost = ACME_AN[0] + WAYNE_AN[0], ACME_AN[1] + WAYNE_AN[1]
    assert (an_rev, an_cost) == (270_000_000, 207_000_000)
    assert (prov["anthropic"]["requests"], prov["anthropic"]["revenue_pico"],
            prov["anthropic"]["cost_pico"], prov["anthropic"]["margin_usd"],
            prov["anthropic"]["margin_pct"]) == (2, an_rev, an_cost, "0.000063000000", "23.33")
    models = {r["model"]: r for r in data["by_model"]}
    assert set(models) == {"oa-list", "an-list", "an-markup"}
    assert models["an-markup"]["margin_pico"] == 18_000_000
    assert models["an-markup"]["margin_pct"] == "20.00"
    total = data["total"]
    assert (total["requests"], total["revenue_pico"], total["cost_pico"], total["margin_pico"],
            total["margin_pct"]) == (3, 330_000_000, 237_000_000, 93_000_000, "28.18")
    assert (total["revenue_usd"], total["cost_usd"]) == ("0.000330000000", "0.000237000000")

    text = cli("margins", "--month", month_of(billed["now"]), "--database", billed["db"]).stdout
    assert "anthropic" in text and "0.000063000000" in text and "28.18" in text


@pytest.mark.parametrize("command", ["margins", "statement"])
def test_a_malformed_month_is_a_usage_error_not_a_traceback(billed, command):
    extra = ["--customer", "acme"] if command == "statement" else []
    bad = cli(command, *extra, "--month", "2026-13", "--database", billed["db"], check=False)
    assert "Traceback" not in bad.stderr, bad.stderr
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr
