"""Issue #3, prices and costs: every figure below is computed by hand from the catalog in
helpers.priced_catalog (USD per million tokens; 1 USD/Mtok = 10^6 picodollars per token)
and compared with the ledger row, the ``x-modelmart-cost`` header and ``usage.cost``."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from tests.fakes.script import Reply
from tests.marketplace.helpers import M, all_usage, get_usage, wait_usage

MSG = [{"role": "user", "content": "price me"}]


def oa(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


def an(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


def usd(pico: int) -> str:
    """The header's format: 12 decimal places."""
    return f"{Decimal(pico) / 10**12:.12f}"


def check_row(gateway, rid, *, cost, price, tokens, model, provider):
    row = wait_usage(gateway.database_url, rid)
    assert row.status == "ok" and row.model == model and row.provider == provider
    assert (row.input_tokens, row.cache_read_tokens, row.cache_write_tokens,
            row.output_tokens, row.reasoning_tokens) == tokens
    assert row.cost_pico == cost, f"cost {row.cost_pico} != {cost}"
    assert row.price_pico == price, f"price {row.price_pico} != {price}"
    return row


def test_openai_cached_tokens_are_inside_prompt_tokens(priced, scripted):
    fake_openai, _ = scripted
    # The fake reports prompt_tokens = 1000 + 600 = 1600 with cached_tokens = 600, and
    # completion_tokens = 200 of which reasoning_tokens = 150.
    fake_openai.queue(Reply(text="ok", input_tokens=1000, cache_read_tokens=600,
                            output_tokens=200, reasoning_tokens=150))
    raw = oa(priced).chat.completions.with_raw_response.create(model="oa-list", messages=MSG)
    body = raw.http_response.json()
    assert body["usage"]["prompt_tokens"] == 1600
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 600
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 150
    # uncached input 1600 - 600 = 1000; reasoning is part of the 200 output, never added.
    cost = 1000 * 1 * M + 600 * M // 4 + 200 * 4 * M  # 1.00 in, 0.25 cache read, 4.00 out
    assert cost == 1_950_000_000
    price = 1000 * 2 * M + 600 * M // 2 + 200 * 8 * M  # 2.00 in, 0.50 cache read, 8.00 out
    assert price == 3_900_000_000
    rid = raw.headers["x-request-id"]
    check_row(priced, rid, cost=cost, price=price, tokens=(1000, 600, 0, 200, 150),
              model="oa-list", provider="openai")
    assert raw.headers["x-modelmart-cost"] == usd(price) == "0.003900000000"
    assert Decimal(str(body["usage"]["cost"])) == Decimal("0.0039")


def test_anthropic_cache_read_and_write_are_separate_and_marked_up(priced, scripted):
    _, fake_anthropic = scripted
    # Anthropic's input_tokens excludes cache reads and writes.
    fake_anthropic.queue(Reply(text="ok", input_tokens=502, cache_read_tokens=2000,
                               cache_write_tokens=1000, output_tokens=300))
    raw = an(priced).messages.with_raw_response.create(model="an-markup", max_tokens=400,
                                                       messages=MSG)
    body = raw.http_response.json()
    assert body["usage"]["input_tokens"] == 502
    assert body["usage"]["cache_read_input_tokens"] == 2000
    assert body["usage"]["cache_creation_input_tokens"] == 1000
    # 3.00 in, 0.30 cache read, 3.75 cache write, 15.00 out
    cost = 502 * 3 * M + 2000 * 3 * M // 10 + 1000 * 375 * M // 100 + 300 * 15 * M
    assert cost == 1_506_000_000 + 600_000_000 + 3_750_000_000 + 4_500_000_000 == 10_356_000_000
    price = cost * 125 // 100  # markup 0.25: exact here
    assert price == 12_945_000_000
    check_row(priced, raw.headers["x-request-id"], cost=cost, price=price,
              tokens=(502, 2000, 1000, 300, 0), model="an-markup", provider="anthropic")
    assert raw.headers["x-modelmart-cost"] == usd(price) == "0.012945000000"
    assert Decimal(str(body["usage"]["cost"])) == Decimal("0.012945")


def test_anthropic_thinking_tokens_are_not_counted_twice(priced, scripted):
    _, fake_anthropic = scripted
    fake_anthropic.queue(Reply(text="ok", input_tokens=100, output_tokens=300,
                               reasoning_tokens=120))
    raw = an(priced).messages.with_raw_response.create(model="an-list", max_tokens=400,
                                                       messages=MSG)
    cost = 100 * 3 * M + 300 * 15 * M  # the 120 thinking tokens are inside the 300
    price = 100 * 4 * M + 300 * 20 * M
    assert price == 6_400_000_000
    check_row(priced, raw.headers["x-request-id"], cost=cost, price=price,
              tokens=(100, 0, 0, 300, 120), model="an-list", provider="anthropic")
    assert raw.headers["x-modelmart-cost"] == usd(price)


def test_cross_dialect_openai_model_from_the_anthropic_sdk(priced, scripted):
    fake_openai, _ = scripted
    fake_openai.queue(Reply(text="ok", input_tokens=40, cache_read_tokens=10, output_tokens=5))
    raw = an(priced).messages.with_raw_response.create(model="oa-markup", max_tokens=50,
                                                       messages=MSG)
    body = raw.http_response.json()
    assert body["usage"]["input_tokens"] == 40 and body["usage"]["cache_read_input_tokens"] == 10
    cost = 40 * 1 * M + 10 * M // 4 + 5 * 4 * M  # 40e6 + 2.5e6 + 20e6
    assert cost == 62_500_000
    price = cost * 11 // 10  # markup 0.1: 68_750_000, exact
    check_row(priced, raw.headers["x-request-id"], cost=cost, price=price,
              tokens=(40, 10, 0, 5, 0), model="oa-markup", provider="openai")
    assert raw.headers["x-modelmart-cost"] == usd(price) == "0.000068750000"


def test_markup_rounds_half_up_to_a_whole_picodollar(priced, scripted):
    fake_openai, _ = scripted
    fake_openai.queue(Reply(text="ok", input_tokens=7, output_tokens=1))
    raw = oa(priced).chat.completions.with_raw_response.create(model="oa-odd", messages=MSG)
    cost = 7 * 1 + 1 * 3  # 1 and 3 picodollars per token
    assert cost == 10
    price = 13  # 10 × 1.25 = 12.5 → 13 (half up; not 12, truncated or banker's)
    check_row(priced, raw.headers["x-request-id"], cost=cost, price=price,
              tokens=(7, 0, 0, 1, 0), model="oa-odd", provider="openai")
    assert raw.headers["x-modelmart-cost"] == usd(13) == "0.000000000013"


def test_streamed_request_is_billed_from_the_final_usage(priced, scripted):
    fake_openai, fake_anthropic = scripted
    fake_openai.queue(Reply(text="streamed words here", input_tokens=321, cache_read_tokens=64,
                            output_tokens=45, reasoning_tokens=5))
    with oa(priced).chat.completions.with_streaming_response.create(
            model="oa-list", messages=MSG, stream=True,
            stream_options={"include_usage": True}) as resp:
        rid = resp.headers["x-request-id"]
        lines = [line for line in resp.iter_lines() if line.startswith("data: {")]
    assert '"prompt_tokens":385' in lines[-1].replace(" ", "")
    price = 321 * 2 * M + 64 * M // 2 + 45 * 8 * M
    cost = 321 * M + 64 * M // 4 + 45 * 4 * M
    row = check_row(priced, rid, cost=cost, price=price, tokens=(321, 64, 0, 45, 5),
                    model="oa-list", provider="openai")
    assert row.stream and row.extra == {}  # not estimated

    fake_anthropic.queue(Reply(text="more streamed words", input_tokens=77,
                               cache_write_tokens=33, cache_read_tokens=11, output_tokens=19))
    with an(priced).messages.with_streaming_response.create(
            model="an-list", max_tokens=100, messages=MSG, stream=True) as resp:
        rid = resp.headers["x-request-id"]
        resp.read()
    price = 77 * 4 * M + 33 * 5 * M + 11 * 4 * M // 10 + 19 * 20 * M
    cost = 77 * 3 * M + 33 * 375 * M // 100 + 11 * 3 * M // 10 + 19 * 15 * M
    row = check_row(priced, rid, cost=cost, price=price, tokens=(77, 11, 33, 19, 0),
                    model="an-list", provider="anthropic")
    assert row.stream and row.surface == "anthropic"


def test_model_without_a_price_is_refused_and_never_billed(priced, scripted):
    before = {r.request_id for r in all_usage(priced.database_url)}
    with pytest.raises(openai.BadRequestError) as e:
        oa(priced).chat.completions.create(model="mystery", messages=MSG)
    assert e.value.status_code == 400
    assert "mystery" in e.value.message and "price" in e.value.message
    assert e.value.body["param"] == "model"
    rid_openai = e.value.response.headers["x-request-id"]

    with pytest.raises(anthropic.BadRequestError) as e:
        an(priced).messages.create(model="mystery", max_tokens=5, messages=MSG)
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "mystery" in e.value.body["error"]["message"]
    rid_anthropic = e.value.response.headers["x-request-id"]

    resp = httpx.post(f"{priced.url}/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {priced.key}"},
                      json={"model": "mystery", "messages": MSG, "stream": True})
    assert resp.status_code == 400 and "mystery" in resp.json()["error"]["message"]
    assert not scripted[0].received, "an unpriced model reached its upstream"

    # Nothing is billed: at most an audit row saying it was refused, at zero.
    for rid in (rid_openai, rid_anthropic):
        row = get_usage(priced.database_url, rid)
        assert row is None or (row.status == "refused" and row.http_status == 400
                               and row.price_pico == row.cost_pico == 0)
    new = [r for r in all_usage(priced.database_url) if r.request_id not in before]
    assert all(r.status == "refused" and r.price_pico == 0 for r in new
               if r.model == "mystery")
