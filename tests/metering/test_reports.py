"""Statements, margins and usage summaries, with exact figures, on the real SQLite store."""

from __future__ import annotations

import pytest

from modelmart.catalog.loader import parse_catalog
from modelmart.core.errors import InvalidRequest, NotFound
from modelmart.core.types import Usage
from modelmart.metering import reports
from modelmart.metering.prices import PriceBook
from modelmart.metering.pricing import Pricing
from modelmart.metering.recorder import Recorder
from tests.metering.conftest import usage_record, utc


@pytest.fixture
async def ledger(store):
    acme = await store.create_customer("acme")
    globex = await store.create_customer("globex")
    rows = [
        # (id, customer, when, model, provider, input, output, cache_read, cost, price)
        ("a1", acme, utc(2026, 3, 1), "gpt", "openai", 100, 10, 0, 1_000, 1_500),
        ("a2", acme, utc(2026, 3, 31, 23, 59, 59), "gpt", "openai", 200, 20, 50, 2_000, 3_001),
        ("a3", acme, utc(2026, 3, 15), "claude", "anthropic", 300, 30, 0, 4_000, 5_000),
        ("a4", acme, utc(2026, 2, 28, 23, 59, 59), "gpt", "openai", 999, 9, 0, 9, 9),  # Feb
        ("a5", acme, utc(2026, 4, 1), "gpt", "openai", 999, 9, 0, 9, 9),  # April
        ("g1", globex, utc(2026, 3, 2), "claude", "anthropic", 10, 1, 0, 700, 0),  # free tier
    ]
    await store.insert_usage([
        usage_record(rid, customer_id=c.id, created_at=t, model=m, provider=p,
                     deployment=f"{m}/{p}-0", input_tokens=i, output_tokens=o,
                     cache_read_tokens=cr, cost_pico=cost, price_pico=price)
        for rid, c, t, m, p, i, o, cr, cost, price in rows])
    return store


async def test_statement_lines_totals_and_period(ledger):
    st = await reports.statement(ledger, "acme", "2026-03")
    assert [(ln.model, ln.requests, ln.input_tokens, ln.output_tokens, ln.cache_read_tokens,
             ln.price_pico) for ln in st.lines] == [
        ("claude", 1, 300, 30, 0, 5_000),
        ("gpt", 2, 300, 30, 50, 4_501),
    ]
    assert st.total_pico == 9_501
    assert (st.period_start, st.period_end) == (utc(2026, 3, 1), utc(2026, 4, 1))
    d = st.to_dict()
    assert d["period"] == {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    assert d["total"]["price_usd"] == "0.000000009501" and d["total"]["price_pico"] == 9_501
    assert d["lines"][1]["price_usd"] == "0.000000004501"
    assert d["customer"] == "acme" and d["month"] == "2026-03"


async def test_statement_csv(ledger):
    st = await reports.statement(ledger, "acme", "2026-03")
    assert st.to_csv() == (
        "model,requests,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,"
        "reasoning_tokens,price_usd\n"
        "claude,1,300,30,0,0,0,0.000000005000\n"
        "gpt,2,300,30,50,0,0,0.000000004501\n"
        "TOTAL,3,600,60,50,0,0,0.000000009501\n"
    )


async def test_statement_for_a_month_without_usage_is_empty(ledger):
    st = await reports.statement(ledger, "globex", "2025-12")
    assert st.lines == [] and st.total_pico == 0
    assert st.to_csv().splitlines()[-1] == "TOTAL,0,0,0,0,0,0,0.000000000000"


async def test_unknown_customer_and_bad_month_are_clear_errors(ledger):
    with pytest.raises(NotFound, match="no customer named 'initech'"):
        await reports.statement(ledger, "initech", "2026-03")
    for month in ("2026-13", "2026-3", "March", ""):
        with pytest.raises(InvalidRequest, match="YYYY-MM"):
            await reports.statement(ledger, "acme", month)


async def test_december_ends_at_the_new_year():
    assert reports.month_bounds("2025-12") == (utc(2025, 12, 1), utc(2026, 1, 1))


async def test_margins_per_provider_and_model(ledger):
    m = await reports.margins(ledger, "2026-03")
    assert m["by_provider"] == [
        {"provider": "anthropic", "requests": 2,
         "revenue_pico": 5_000, "revenue_usd": "0.000000005000",
         "cost_pico": 4_700, "cost_usd": "0.000000004700",
         "margin_pico": 300, "margin_usd": "0.000000000300", "margin_pct": "6.00"},
        {"provider": "openai", "requests": 2,
         "revenue_pico": 4_501, "revenue_usd": "0.000000004501",
         "cost_pico": 3_000, "cost_usd": "0.000000003000",
         "margin_pico": 1_501, "margin_usd": "0.000000001501", "margin_pct": "33.35"},
    ]
    assert [(r["model"], r["margin_pico"]) for r in m["by_model"]] == [("claude", 300),
                                                                       ("gpt", 1_501)]
    assert m["total"]["margin_pico"] == 1_801 and m["total"]["margin_pct"] == "18.96"
    empty = await reports.margins(ledger, "2020-01")
    assert empty["by_provider"] == [] and empty["total"]["margin_pct"] is None


async def test_margin_pct_of_a_loss_and_of_no_revenue():
    assert reports.margin_pct(700, -700) == "-100.00"
    assert reports.margin_pct(0, -700) is None
    assert reports.margin_pct(3, 1) == "33.33"


async def test_usage_passthrough_formats_money(ledger):
    rows = await reports.usage(ledger, since=utc(2026, 3, 1), until=utc(2026, 4, 1),
                               by=["customer"])
    assert [(r["customer"], r["requests"], r["price_usd"], r["margin_usd"]) for r in rows] == [
        (1, 3, "0.000000009501", "0.000000002501"),
        (2, 1, "0.000000000000", "-0.000000000700"),
    ]


async def test_quote_record_and_bill_end_to_end(store, tmp_path):
    """A priced request goes through the recorder and comes out on the statement exactly."""
    customer = await store.create_customer("acme")
    catalog = parse_catalog({"models": {
        "claude": {"provider": "anthropic", "model": "claude-haiku-4-5-20251001"}}})
    pricing = Pricing(catalog, PriceBook.load(), {"claude": {"markup": "0.2"}})
    entry = catalog.models["claude"]
    at = utc(2026, 5, 20)
    usage = Usage(input_tokens=1234, output_tokens=567, cache_read_tokens=8901,
                  cache_write_tokens=2345)
    cost, price = pricing.quote(entry, entry.deployments[0], usage, at)
    # haiku 4.5: 1234×1 + 567×5 + 8901×0.10 + 2345×1.25 µ$ = 7,890,350,000 pico
    assert cost == 1234 * 1_000_000 + 567 * 5_000_000 + 8901 * 100_000 + 2345 * 1_250_000
    assert cost == 7_890_350_000 and price == 9_468_420_000
    recorder = Recorder(store, str(tmp_path / "j"))
    await recorder.start()
    for n in range(3):
        recorder.record(usage_record(f"e{n}", customer_id=customer.id, created_at=at,
                                     model="claude", provider="anthropic", cost_pico=cost,
                                     price_pico=price, input_tokens=usage.input_tokens))
    await recorder.close()
    st = await reports.statement(store, "acme", "2026-05")
    assert st.total_pico == 3 * 9_468_420_000
    assert st.to_dict()["total"]["price_usd"] == "0.028405260000"
