"""Customer prices: list prices, markups and their rounding, refusal, worst case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelmart.catalog.loader import BUNDLED_MODEL_ID, parse_catalog
from modelmart.core.errors import InvalidRequest
from modelmart.core.money import usd_to_pico
from modelmart.core.types import Usage
from modelmart.metering.prices import PriceBook, PriceError
from modelmart.metering.pricing import Pricing, UnpricedModel, apply_markup
from tests.metering.conftest import utc

AT = utc(2026, 3, 1)
BOOK = PriceBook.load()
CATALOG = parse_catalog({"models": {
    "gpt": {"provider": "openai", "model": "gpt-4o-2024-08-06"},
    "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929"},
    "mix": {"deployments": [{"provider": "openai", "model": "gpt-4.1"},
                            {"provider": "anthropic", "model": "claude-haiku-4-5"}]},
    "cheap": {"provider": "openai-compatible", "model": "tiny", "base_url": "http://x/v1"},
    "mystery": {"provider": "mistral", "model": "mistral-large-latest"},
}})
ONE_PICO = {"input": "0.000001", "output": "0.000001", "cache_read": "0.000001",
            "cache_write": "0.000001"}  # 1 picodollar per token


def pricing(**kw) -> Pricing:
    kw.setdefault("model_prices", {})
    return Pricing(CATALOG, BOOK, **kw)


def entry(model_id: str):
    return CATALOG.models[model_id]


def test_list_price_and_provider_cost():
    p = pricing(model_prices={"gpt": {"input": 5, "output": 20, "cache_read": 2.5,
                                      "cache_write": 5}})
    e = entry("gpt")
    usage = Usage(input_tokens=200, cache_read_tokens=800, output_tokens=500)
    cost, price = p.quote(e, e.deployments[0], usage, AT)
    assert cost == usd_to_pico("0.0065")  # 200×2.50 + 800×1.25 + 500×10 per million
    assert price == usd_to_pico("0.013")  # 200×5 + 800×2.5 + 500×20 per million


def test_markup_rounds_half_up_to_whole_picodollars_per_request():
    p = pricing(model_prices={"cheap": {"markup": "0.25"}},
                deployment_costs={"cheap/openai-compatible-0": ONE_PICO})
    e = entry("cheap")
    d = e.deployments[0]
    prices = [p.quote(e, d, Usage(input_tokens=n), AT) for n in (1, 2, 3, 6)]
    # 1.25 → 1, 2.5 → 3 (half-up, not half-even), 3.75 → 4, 7.5 → 8
    assert prices == [(1, 1), (2, 3), (3, 4), (6, 8)]


def test_apply_markup_is_exact_for_huge_amounts():
    assert apply_markup(10**30 + 1, Decimal("0.25")) == 1_250_000_000_000_000_000_000_000_000_001
    assert apply_markup(15, Decimal("0.1")) == 17  # 16.5 → 17
    assert apply_markup(100, Decimal("-0.5")) == 50
    assert apply_markup(0, Decimal("3")) == 0


def test_default_markup_prices_models_without_their_own_price():
    p = pricing(default_markup="0.5")
    e = entry("claude")
    usage = Usage(input_tokens=1000, output_tokens=100)
    cost, price = p.quote(e, e.deployments[0], usage, AT)
    assert cost == usd_to_pico("0.0045")  # 1000×3 + 100×15 per million
    assert price == usd_to_pico("0.00675")


def test_a_price_change_does_not_change_an_earlier_quote():
    p = pricing(model_prices={"gpt": [
        {"effective_from": "2026-01-01", "input": 4, "output": 16, "cache_read": 2,
         "cache_write": 4},
        {"effective_from": "2026-04-01", "input": 6, "output": 24, "cache_read": 3,
         "cache_write": 6},
    ]})
    e = entry("gpt")
    usage = Usage(input_tokens=1_000_000)
    assert p.quote(e, e.deployments[0], usage, utc(2026, 3, 31, 23, 59, 59))[1] == \
        usd_to_pico(4)
    assert p.quote(e, e.deployments[0], usage, utc(2026, 4, 1))[1] == usd_to_pico(6)
    with pytest.raises(UnpricedModel):  # before the first list price: no price in force
        p.quote(e, e.deployments[0], usage, utc(2025, 12, 31))


def test_deployment_cost_overrides_the_price_book():
    p = pricing(model_prices={"gpt": {"markup": "0"}},
                deployment_costs={"gpt/openai-0": ONE_PICO})
    e = entry("gpt")
    assert p.quote(e, e.deployments[0], Usage(input_tokens=7, output_tokens=3), AT) == (10, 10)


def test_no_price_is_a_refusal_not_a_free_request():
    p = pricing(model_prices={"gpt": {"markup": "0.2"}})
    with pytest.raises(UnpricedModel) as err:
        p.check(entry("claude"), AT)  # cost known, but no list price and no default markup
    assert "model claude has no price configured; refusing to serve it unbilled" in str(err.value)
    assert isinstance(err.value, InvalidRequest) and err.value.status == 400
    assert err.value.param == "model"
    with pytest.raises(UnpricedModel, match="mistral/mistral-large-latest"):
        pricing(default_markup="0.2").check(entry("mystery"), AT)  # no provider cost
    with pytest.raises(UnpricedModel):
        p.quote(entry("claude"), entry("claude").deployments[0], Usage(1, 1), AT)
    p.check(entry("gpt"), AT)  # priced: no error


def test_unpriced_lists_models_for_startup_warnings():
    p = pricing(model_prices={"gpt": {"markup": "0.2"}})
    assert p.unpriced(AT) == ["cheap", "claude", "mix", "mystery"]
    with_markup = pricing(default_markup="0.2")
    assert with_markup.unpriced(AT) == ["cheap", "mystery"]


def test_bundled_local_model_is_explicitly_free():
    p = pricing()
    e = CATALOG.models[BUNDLED_MODEL_ID]
    p.check(e, AT)
    assert p.quote(e, e.deployments[0], Usage(1000, 1000), AT) == (0, 0)
    assert BUNDLED_MODEL_ID not in p.unpriced(AT)


def test_worst_case_is_the_dearest_deployment_and_input_rate():
    p = pricing(model_prices={"mix": {"markup": "0.5"}, "claude": {"markup": "0.25"}})
    # mix: gpt-4.1 costs 1000×2 + 500×8 = 6000 µ$; haiku at most 1000×1.25 + 500×5 = 3750
    assert p.worst_case(entry("mix"), 1000, 500, AT) == usd_to_pico("0.009")
    # claude: the prompt may be written to the cache at 3.75/M: 1000×3.75 µ$ × 1.25
    assert p.worst_case(entry("claude"), 1000, 0, AT) == usd_to_pico("0.0046875")
    with pytest.raises(UnpricedModel):
        p.worst_case(entry("cheap"), 10, 10, AT)


def test_bad_price_configuration_is_rejected_at_construction():
    with pytest.raises(PriceError, match="no such model"):
        pricing(model_prices={"nope": {"markup": "0.1"}})
    with pytest.raises(PriceError, match="no such deployment"):
        pricing(deployment_costs={"nope/x": ONE_PICO})
    with pytest.raises(PriceError, match="not both"):
        pricing(model_prices={"gpt": {"markup": "0.1", "input": 1}})
    with pytest.raises(PriceError, match="cache_read"):
        pricing(model_prices={"gpt": {"input": 1, "output": 1}})
    with pytest.raises(PriceError, match="at least -1"):
        pricing(default_markup="-2")
