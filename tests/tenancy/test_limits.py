"""Requests and tokens per minute, per key and per customer, on a sliding window."""

from __future__ import annotations

import asyncio

import pytest

from modelmart.core.errors import RateLimited
from modelmart.store.records import ApiKey
from modelmart.tenancy.counters import MemoryCounters
from modelmart.tenancy.limits import RateLimiter, format_duration, seconds_until_fits

MINUTE = 1_700_000_040.0  # the start of a minute (a multiple of 60)
T0 = MINUTE + 10


def make_key(key_id: int = 1, customer_id: int | None = 7, **limits) -> ApiKey:
    return ApiKey(id=key_id, customer_id=customer_id, prefix=f"mm-key{key_id:04d}",
                  secret_hash="h", created_at=0.0, customer_name="acme", **limits)


@pytest.fixture
def limiter():
    return RateLimiter(MemoryCounters())


async def admitted_count(limiter, key, n, now, customer=None, tokens=0) -> int:
    count = 0
    for _ in range(n):
        try:
            await limiter.admit(key, customer, tokens, now=now)
            count += 1
        except RateLimited:
            pass
    return count


async def test_rpm_refusal_names_the_limit_with_retry_after_and_headers(limiter):
    key = make_key(rpm=3)
    for _ in range(3):
        await limiter.admit(key, None, 0, now=T0)
    with pytest.raises(RateLimited) as caught:
        await limiter.admit(key, None, 0, now=T0)
    err = caught.value
    assert err.status == 429
    assert err.message == "rate limit exceeded: key mm-key0001 allows 3 requests per minute"
    # Next minute, 20 s in, the 3 requests weigh 3 * 40/60 = 2, leaving room for one: 70 s.
    assert err.retry_after == pytest.approx(70.0, abs=0.01)
    assert err.headers["retry-after"] == "70"
    assert err.headers["x-ratelimit-limit-requests"] == "3"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in err.headers  # the key has no token limit
    with pytest.raises(RateLimited):
        await limiter.admit(key, None, 0, now=T0 + 69.9)
    await limiter.admit(key, None, 0, now=T0 + 70.1)


async def test_successful_admission_returns_openai_rate_limit_headers(limiter):
    key = make_key(rpm=10, tpm=1000)
    ticket = await limiter.admit(key, None, 300, now=T0)
    assert ticket.headers == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1m50s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "700",
        "x-ratelimit-reset-tokens": "1m50s",
    }


async def test_tpm_refusal_and_refused_requests_consume_nothing(limiter):
    key = make_key(tpm=1000, rpm=100)
    await limiter.admit(key, None, 600, now=T0)
    with pytest.raises(RateLimited, match="key mm-key0001 allows 1000 tokens per minute") as c:
        await limiter.admit(key, None, 600, now=T0)
    assert c.value.headers["x-ratelimit-remaining-tokens"] == "400"
    assert c.value.headers["x-ratelimit-remaining-requests"] == "99"  # the refusal was rolled back
    await limiter.admit(key, None, 400, now=T0)


async def test_a_request_larger_than_the_limit_says_so(limiter):
    with pytest.raises(RateLimited, match="request of 5000 tokens is larger than key mm-key0001"):
        await limiter.admit(make_key(tpm=1000), None, 5000, now=T0)


async def test_settle_corrects_the_token_estimate(limiter):
    key = make_key(tpm=1000)
    ticket = await limiter.admit(key, None, 800, now=T0)
    with pytest.raises(RateLimited):
        await limiter.admit(key, None, 800, now=T0)
    await limiter.settle(ticket, 150)
    ticket2 = await limiter.admit(key, None, 800, now=T0)
    assert ticket2.headers["x-ratelimit-remaining-tokens"] == "50"
    await limiter.settle(ticket2, 900)  # more than estimated: counted too
    with pytest.raises(RateLimited):
        await limiter.admit(key, None, 1, now=T0)


async def test_sliding_window_weights_the_previous_minute_by_overlap(limiter):
    half, tenth = make_key(1, rpm=10), make_key(2, rpm=10)
    for key in (half, tenth):
        assert await admitted_count(limiter, key, 12, now=MINUTE + 30) == 10
    # 30 s into the next minute half of the previous one still counts: room for 5.
    assert await admitted_count(limiter, half, 12, now=MINUTE + 90) == 5
    # 54 s in, a tenth of it counts: room for 9.
    assert await admitted_count(limiter, tenth, 12, now=MINUTE + 114) == 9
    # Two minutes on, the first minute has slid out entirely; 9 of the second still weigh 9.
    assert await admitted_count(limiter, tenth, 12, now=MINUTE + 120) == 1
    # A minute with nothing before it has the whole limit again.
    assert await admitted_count(limiter, tenth, 12, now=MINUTE + 240) == 10


async def test_customer_limit_holds_across_two_keys(limiter):
    a, b = make_key(1), make_key(2)  # no key limits; customer 7 allows 5 requests
    customer = (5, None)
    results = []
    for i in range(8):
        try:
            await limiter.admit(a if i % 2 else b, customer, 0, now=T0)
            results.append(True)
        except RateLimited as err:
            results.append(False)
            assert err.message == "rate limit exceeded: customer acme allows 5 requests per minute"
    assert results.count(True) == 5


async def test_refusal_by_the_customer_does_not_consume_the_key_quota(limiter):
    key = make_key(rpm=3)
    customer = (None, 100)
    await limiter.admit(key, customer, 80, now=T0)
    for _ in range(5):
        with pytest.raises(RateLimited, match="customer acme allows 100 tokens per minute"):
            await limiter.admit(key, customer, 80, now=T0)
    # Only the first request counted against the key's 3 requests per minute.
    assert await admitted_count(limiter, key, 5, now=T0, customer=customer) == 2


async def test_concurrent_admissions_never_exceed_the_limit(limiter):
    key = make_key(rpm=10, tpm=10_000)
    results = await asyncio.gather(*(limiter.admit(key, (15, None), 100, now=T0)
                                     for _ in range(100)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 10
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, Exception))


async def test_no_limits_means_no_headers_and_no_counting(limiter):
    ticket = await limiter.admit(make_key(), (None, None), 10**9, now=T0)
    assert ticket.headers == {} and ticket.token_counters == []
    assert len(limiter._counters.table) == 0
    await limiter.settle(ticket, 5)


def test_seconds_until_fits():
    assert seconds_until_fits(0, 0, 10, 5, 1) == 0
    assert seconds_until_fits(10, 0, 0, 10, 1) == pytest.approx(6)  # 10*(1-t/60) + 1 <= 10
    assert seconds_until_fits(10, 0, 30, 10, 1) == 0  # half of 10 already slid out
    assert seconds_until_fits(0, 10, 30, 10, 1) == pytest.approx(36)  # 30 + 10*(1-t/60) <= 9
    assert seconds_until_fits(0, 0, 0, 5, 6) == 60


def test_format_duration():
    assert format_duration(0.02) == "20ms"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(360) == "6m0s"
    assert format_duration(110) == "1m50s"


async def test_release_gives_back_the_request_and_its_tokens(limiter):
    key = make_key(rpm=2, tpm=100)
    ticket = await limiter.admit(key, (2, None), 60, now=T0)  # e.g. then refused by its budget
    await limiter.release(ticket)
    await limiter.admit(key, (2, None), 60, now=T0)
    await limiter.admit(key, (2, None), 40, now=T0)
    with pytest.raises(RateLimited):
        await limiter.admit(key, (2, None), 0, now=T0)
