"""Issue #3, budgets: concurrent requests cannot overspend a key's budget, because each
reserves its worst case before the upstream call; refusals are 402 in the caller's dialect;
a daily budget forgets yesterday, a total budget does not."""

from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import anthropic
import openai
import pytest
import redis

from modelmart.store.records import UsageRecord
from modelmart.metering.bounds import MESSAGE_TOKENS, TEMPLATE_TOKENS
from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import (
    M, all_usage, fresh_key, insert_usage, poll, priced_catalog,
)

PROMPT = "x" * 40
MAX_TOKENS = 100
# metering/bounds.input_token_bound: a token a UTF-8 byte, the template's allowance, and the
# one message's and the reply's role markers.
ESTIMATE = len(PROMPT) + TEMPLATE_TOKENS + 2 * MESSAGE_TOKENS
assert ESTIMATE == 120
# Pricing.worst_case: the dearer of (input, output) and (cache write, output) at oa-list's
# list price (2.00 in, 2.50 cache write, 8.00 out per million tokens).
WORST = max(ESTIMATE * 2 * M + MAX_TOKENS * 8 * M, ESTIMATE * 25 * M // 10 + MAX_TOKENS * 8 * M)
assert WORST == 1_100_000_000
BUDGET_PICO = 10 * WORST  # room for exactly ten reservations
# What each admitted request really costs, when the upstream counts the prompt at the bound.
ACTUAL = ESTIMATE * 2 * M + 100 * 8 * M
assert ACTUAL == 1_040_000_000
assert 11 * ACTUAL > BUDGET_PICO  # so an eleventh can never fit, whatever the timing


def usd(pico: int) -> str:
    return str(Decimal(pico) / 10**12)


@pytest.fixture(scope="module")
def priced_redis(fake_openai, fake_anthropic, redis_server):
    """The priced gateway with its budgets and limits in Redis (as replicas run)."""
    redis.Redis.from_url(redis_server).flushdb()  # key ids restart at 1 in each database
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic),
                           redis_url=redis_server).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def gateway(request):
    return request.getfixturevalue("priced" if request.param == "memory" else "priced_redis")


def test_fifty_parallel_requests_cannot_overspend(gateway, scripted):
    priced = gateway
    fake_openai, _ = scripted
    secret = fresh_key(priced, budget_usd=usd(BUDGET_PICO), period="total")
    key_id = priced.app.keys.lookup(secret).id
    # Slow replies: all fifty are in flight together.
    fake_openai.queue(*[Reply(text="ok", input_tokens=ESTIMATE, output_tokens=100, delay=0.3)
                        for _ in range(50)])
    client = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=secret, max_retries=0,
                           timeout=30)

    def call(_):
        try:
            client.chat.completions.create(model="oa-list", max_tokens=MAX_TOKENS,
                                           messages=[{"role": "user", "content": PROMPT}])
            return "ok"
        except openai.APIStatusError as exc:
            return exc

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(call, range(50)))
    successes = [o for o in outcomes if o == "ok"]
    refusals = [o for o in outcomes if o != "ok"]
    assert len(successes) == 10, [str(o) for o in refusals[:3]]
    for exc in refusals:
        assert exc.status_code == 402, exc
        assert exc.body["type"] == "insufficient_quota"
        assert "budget" in exc.message and "total budget" in exc.message
    assert len(fake_openai.received) == 10

    rows = poll(lambda: (lambda rs: rs if len([r for r in rs if r.status == "ok"]) >= 10 else None)(
        [r for r in all_usage(priced.database_url) if r.key_id == key_id]), 2.0, 0.05, "rows")
    spent = sum(r.price_pico for r in rows)
    assert spent == 10 * ACTUAL
    assert spent <= BUDGET_PICO  # never over budget, let alone by more than one worst case
    assert all(r.price_pico == 0 for r in rows if r.status != "ok")

    # Settled: 70_000_000 picodollars are left, less than one worst case. Still refused, in
    # the Anthropic dialect too.
    an = anthropic.Anthropic(base_url=priced.url, api_key=secret, max_retries=0)
    try:
        an.messages.create(model="oa-list", max_tokens=MAX_TOKENS,
                           messages=[{"role": "user", "content": PROMPT}])
        raise AssertionError("a request past the budget was admitted")
    except anthropic.APIStatusError as exc:
        assert exc.status_code == 402
        assert exc.body["type"] == "error" and exc.body["error"]["type"] == "billing_error"
        assert "budget" in exc.body["error"]["message"]


def _spend(key, pico: int, at: float) -> UsageRecord:
    return UsageRecord(request_id=f"seed-{uuid.uuid4().hex}", created_at=at,
                       customer_id=key.customer_id, key_id=key.id, model="oa-list",
                       deployment="oa-list/openai-0", provider="openai", surface="openai",
                       stream=False, status="ok", input_tokens=1, price_pico=pico)


def test_daily_budget_forgets_yesterday_and_total_budget_does_not(priced, scripted):
    budget = "0.001"  # 10^9 picodollars
    now = time.time()
    yesterday = now - 86400 - 60
    secrets = {name: fresh_key(priced, budget_usd=budget, period=period)
               for name, period in (("day", "day"), ("total", "total"), ("day_spent", "day"))}
    keys = {name: priced.app.keys.lookup(s) for name, s in secrets.items()}
    # Ledger history written before the keys' first request (their budgets seed from it).
    insert_usage(priced.database_url, [
        _spend(keys["day"], 10**9, yesterday),
        _spend(keys["total"], 10**9, yesterday),
        _spend(keys["day_spent"], 10**9, now - 1),
    ])

    def ask(name):
        client = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=secrets[name],
                               max_retries=0)
        return client.chat.completions.with_raw_response.create(
            model="oa-list", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert ask("day").http_response.status_code == 200  # yesterday's spend does not count

    try:
        ask("total")
        raise AssertionError("a spent total budget admitted a request")
    except openai.APIStatusError as exc:
        assert exc.status_code == 402 and "total budget" in exc.message
        assert "retry-after" not in exc.response.headers  # a total budget never resets

    try:
        ask("day_spent")
        raise AssertionError("a spent daily budget admitted a request")
    except openai.APIStatusError as exc:
        assert exc.status_code == 402 and "daily budget" in exc.message
        until_midnight = 86400 - now % 86400
        retry_after = int(exc.response.headers["retry-after"])
        assert abs(retry_after - until_midnight) <= 5


def test_budgets_beyond_2_to_the_53_picodollars_are_exact_in_redis(priced_redis, scripted):
    """$20,000 is 2 × 10^16 picodollars: past 2^53, where a double cannot tell n from n + 1."""
    gw = priced_redis
    budget = 20_000 * 10**12
    threshold = budget - WORST  # spent at most this much: one more worst case fits
    assert threshold > 2**54 and threshold % 4 == 0  # doubles are 4 apart here
    fits, short = (fresh_key(gw, budget_usd="20000", period="total") for _ in range(2))
    keys = {name: gw.app.keys.lookup(s) for name, s in (("fits", fits), ("short", short))}
    insert_usage(gw.database_url, [_spend(keys["fits"], threshold, time.time() - 5),
                                   _spend(keys["short"], threshold + 1, time.time() - 5)])

    def ask(secret):
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0)
        return client.chat.completions.create(model="oa-list", max_tokens=MAX_TOKENS,
                                              messages=[{"role": "user", "content": PROMPT}])

    ask(fits)
    try:
        ask(short)
        raise AssertionError("admitted a request one picodollar past its budget")
    except openai.APIStatusError as exc:
        assert exc.status_code == 402
