"""Provider costs: hand-computed figures for each provider's usage shape, versions, lookup."""

from __future__ import annotations

import pytest

from modelmart.core.money import usd_to_pico
from modelmart.core.types import Usage
from modelmart.dialects.anthropic_messages.response import decode_usage as anthropic_usage
from modelmart.dialects.openai_chat.usage import decode_usage as openai_usage
from modelmart.metering.prices import (
    PriceBook, PriceError, PriceSchedule, parse_prices, parse_schedule, undated,
)
from tests.metering.conftest import utc

BOOK = PriceBook.load()


def cost(kind: str, model: str, usage: Usage, when: float) -> int:
    return BOOK.cost_schedule(kind, model).at(when).cost(usage)


def test_openai_cached_tokens_are_inside_prompt_tokens():
    # prompt_tokens 1000 of which 800 cached → 200 uncached input + 800 cache reads;
    # 300 of the 500 completion tokens are reasoning, already inside output.
    usage = openai_usage({
        "prompt_tokens": 1000, "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 800},
        "completion_tokens_details": {"reasoning_tokens": 300},
    })
    assert (usage.input_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == (200, 800, 300)
    # gpt-4o: 200 × $2.50/M + 800 × $1.25/M + 500 × $10/M = $0.0005 + $0.001 + $0.005
    assert cost("openai", "gpt-4o", usage, utc(2025, 3, 1)) == usd_to_pico("0.0065")


def test_reasoning_tokens_are_not_priced_twice():
    # o4-mini: 100 × $1.10/M + 1000 output (900 of them reasoning) × $4.40/M
    usage = Usage(input_tokens=100, output_tokens=1000, reasoning_tokens=900)
    assert cost("openai", "o4-mini", usage, utc(2025, 8, 1)) == usd_to_pico("0.00451")


def test_anthropic_cache_reads_and_writes_are_apart_from_input():
    usage = anthropic_usage({"input_tokens": 100, "output_tokens": 50,
                             "cache_read_input_tokens": 2000,
                             "cache_creation_input_tokens": 1000})
    assert usage.total_input_tokens == 3100
    # sonnet 4.5: 100 × $3 + 50 × $15 + 2000 × $0.30 + 1000 × $3.75, per million
    # = 300 + 750 + 600 + 3750 = 5400 micro-dollars
    assert cost("anthropic", "claude-sonnet-4-5-20250929", usage,
                utc(2025, 10, 1)) == usd_to_pico("0.0054")


def test_long_context_rate_applies_to_the_whole_request_past_the_threshold():
    at = utc(2025, 10, 1)
    long = Usage(input_tokens=150_000, cache_read_tokens=60_000, output_tokens=1000)
    # 210k input > 200k: 150000 × $6 + 60000 × $0.60 + 1000 × $22.50, per million
    assert cost("anthropic", "claude-sonnet-4-5", long, at) == usd_to_pico("0.9585")
    edge = Usage(input_tokens=200_000, output_tokens=1000)  # not above: base rates
    assert cost("anthropic", "claude-sonnet-4-5", edge, at) == usd_to_pico("0.615")


def test_gemini_and_bedrock_shapes():
    usage = Usage(input_tokens=10_000, cache_read_tokens=40_000, output_tokens=2_000)
    # flash: 10000 × 0.30 + 40000 × 0.03 + 2000 × 2.50 = 3000 + 1200 + 5000 micro-dollars
    assert cost("gemini", "gemini-2.5-flash", usage, utc(2025, 9, 1)) == usd_to_pico("0.0092")
    # nova-lite via a US inference profile: 10000 × 0.06 + 40000 × 0.015 + 2000 × 0.24
    assert cost("bedrock", "us.amazon.nova-lite-v1:0", usage,
                utc(2025, 9, 1)) == usd_to_pico("0.00168")


def test_provider_without_caching_prices_cache_tokens_as_input():
    usage = Usage(input_tokens=1000, cache_read_tokens=1000, output_tokens=1000)
    # groq llama-3.3-70b: 2000 × $0.59 + 1000 × $0.79 per million
    assert cost("groq", "llama-3.3-70b-versatile", usage, utc(2025, 5, 1)) == \
        usd_to_pico("0.00197")


def test_price_versions_by_effective_date():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost("openai", "o3", usage, utc(2025, 6, 9, 23, 59)) == usd_to_pico(50)
    assert cost("openai", "o3", usage, utc(2025, 6, 10)) == usd_to_pico(10)
    assert BOOK.cost_schedule("openai", "o3").at(utc(2025, 4, 15)) is None  # not yet sold
    chat = [cost("deepseek", "deepseek-chat", usage, utc(2025, m, d))
            for m, d in ((1, 1), (3, 1), (9, 10), (10, 1))]
    assert chat == [usd_to_pico(x) for x in ("0.42", "1.37", "2.24", "0.70")]


def test_lookup_exact_then_undated_then_wildcard():
    at = utc(2025, 1, 1)
    one = Usage(input_tokens=1_000_000)
    # An exact snapshot entry wins over the family: 2024-05-13 stayed at $5.
    assert cost("openai", "gpt-4o-2024-05-13", one, at) == usd_to_pico(5)
    assert cost("openai", "gpt-4o-2024-11-20", one, at) == usd_to_pico("2.5")
    assert cost("anthropic", "claude-3-5-haiku-20241022", one, at) == usd_to_pico("0.8")
    assert cost("anthropic", "claude-3-5-haiku-latest", one, at) == usd_to_pico("0.8")
    assert cost("local", "anything-at-all", Usage(1, 1, 1, 1), at) == 0
    assert BOOK.cost_schedule("openai", "gpt-99") is None
    assert BOOK.cost_schedule("azure-openai", "gpt-4o") is None  # no silent borrowing
    # -latest aliases that move between models are deliberately unpriced.
    assert BOOK.cost_schedule("mistral", "mistral-large-latest") is None


def test_undated():
    assert undated("gpt-4o-2024-08-06") == "gpt-4o"
    assert undated("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert undated("gpt-4o") is None
    assert undated("gpt-4.1-mini") is None


def test_shipped_catalog_is_complete_and_sane():
    required = ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1", "openai/gpt-4.1-mini",
                "openai/gpt-4.1-nano", "openai/o3", "openai/o4-mini", "openai/gpt-5",
                "openai/gpt-5-mini", "anthropic/claude-opus-4-1", "anthropic/claude-sonnet-4-5",
                "anthropic/claude-haiku-4-5", "anthropic/claude-3-5-haiku",
                "bedrock/amazon.nova-micro-v1:0", "bedrock/amazon.nova-lite-v1:0",
                "bedrock/amazon.nova-pro-v1:0", "gemini/gemini-2.5-pro",
                "gemini/gemini-2.5-flash", "gemini/gemini-2.5-flash-lite", "local/*"]
    assert not [k for k in required if k not in BOOK.schedules]
    for prefix in ("mistral/", "groq/", "deepseek/", "together/"):
        assert any(k.startswith(prefix) for k in BOOK.schedules)
    for key, schedule in BOOK.schedules.items():
        for v in schedule.versions:
            assert v.checked and v.source, key
            p = v.prices
            if key != "local/*":
                assert v.source.startswith("https://"), key
                assert p.input > 0, key
                # Only embedding models have no output to bill.
                assert p.output > 0 or "embedding" in key, key
            # A cache hit never costs more than plain input; a write never less.
            assert p.cache_read <= p.input <= p.cache_write, key


def test_cache_prices_are_required_unless_the_provider_has_no_caching():
    with pytest.raises(PriceError, match="cache_read"):
        parse_prices({"input": 1, "output": 2}, "x")
    p = parse_prices({"input": 1, "output": 2, "caching": False}, "x")
    assert (p.cache_read, p.cache_write) == (1_000_000, 1_000_000)


def test_prices_finer_than_a_picodollar_per_token_are_refused():
    with pytest.raises(PriceError, match="6 decimal places"):
        parse_prices({"input": "0.0000001", "output": 1, "caching": False}, "x")


def test_schedule_rejects_duplicate_dates_and_needs_dates_in_the_catalog():
    v = {"input": 1, "output": 1, "caching": False, "effective_from": "2025-01-01"}
    with pytest.raises(PriceError, match="same moment"):
        parse_schedule([v, dict(v)], "x")
    with pytest.raises(PriceError, match="effective_from"):
        parse_schedule({"input": 1, "output": 1, "caching": False}, "x", require_dates=True)
    undated_one = parse_schedule({"input": 1, "output": 1, "caching": False}, "x")
    assert isinstance(undated_one, PriceSchedule) and undated_one.at(0).input == 1_000_000


def test_overrides_replace_a_schedule():
    book = PriceBook.load(overrides={"openai/gpt-4o": {"input": "1", "output": "2",
                                                       "cache_read": "0.5",
                                                       "cache_write": "1"}})
    rates = book.cost_schedule("openai", "gpt-4o-2024-11-20").at(utc(2020, 1, 1))
    assert (rates.input, rates.output) == (1_000_000, 2_000_000)
    assert PriceBook.load(default=False).cost_schedule("openai", "gpt-4o") is None
    with pytest.raises(PriceError, match="provider/model"):
        PriceBook.load(overrides={"gpt-4o": {"input": 1, "output": 1}})
