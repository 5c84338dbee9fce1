"""Requests and tokens per minute, per key and per customer: never more than the limit in
any 60 seconds (one-second buckets; see ``tenancy/limits.py``)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from modelmart.core.errors import RateLimited
from modelmart.tenancy.counters import MemoryCounters
from modelmart.tenancy.limits import RateLimiter, format_duration

from .promise import MINUTE, T0, LimitLog, make_key


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
    # The 3 requests of second T0 leave the window 61 s later.
    assert err.retry_after == 61.0
    assert err.headers["retry-after"] == "61" and err.headers["retry-after-ms"] == "61000"
    assert err.headers["x-ratelimit-reset-requests"] == "1m1s"
    assert err.headers["x-ratelimit-limit-requests"] == "3"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in err.headers  # the key has no token limit
    with pytest.raises(RateLimited):
        await limiter.admit(key, None, 0, now=T0 + 60.999)
    await limiter.admit(key, None, 0, now=T0 + 61)


async def test_successful_admission_returns_openai_rate_limit_headers(limiter):
    key = make_key(rpm=10, tpm=1000)
    ticket = await limiter.admit(key, None, 300, now=T0 + 0.25)
    # Reset: until the window holds nothing counted now, when second T0 leaves it.
    assert ticket.headers == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1m0.75s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "700",
        "x-ratelimit-reset-tokens": "1m0.75s",
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
    with pytest.raises(RateLimited,
                       match="request of 5000 tokens is larger than key mm-key0001") as c:
        await limiter.admit(make_key(tpm=1000), None, 5000, now=T0)
    assert c.value.retry_after == 60.0  # it never fits: waiting does not help


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


async def test_a_request_counts_until_its_second_leaves_the_window(limiter):
    early, late = make_key(1, rpm=10), make_key(2, rpm=10)
    for key, at in ((early, MINUTE + 30.0), (late, MINUTE + 30.999)):
        assert await admitted_count(limiter, key, 12, now=at) == 10
    # Both were counted in second MINUTE + 30: full through MINUTE + 90, free at + 91.
    for key in (early, late):
        assert await admitted_count(limiter, key, 1, now=MINUTE + 90.999) == 0
        assert await admitted_count(limiter, key, 12, now=MINUTE + 91) == 10


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


def test_format_duration():
    assert format_duration(0.02) == "20ms"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(360) == "6m0s"
    assert format_duration(61) == "1m1s"


async def test_release_gives_back_the_request_and_its_tokens(limiter):
    key = make_key(rpm=2, tpm=100)
    ticket = await limiter.admit(key, (2, None), 60, now=T0)  # e.g. then refused by its budget
    await limiter.release(ticket)
    await limiter.admit(key, (2, None), 60, now=T0)
    await limiter.admit(key, (2, None), 40, now=T0)
    with pytest.raises(RateLimited):
        await limiter.admit(key, (2, None), 0, now=T0)


# ---- issue #12: "a limit is never exceeded" was not true --------------------------------

async def test_issue_12_rpm_10_admits_nothing_more_until_the_first_ten_leave(limiter):
    # The sliding-window estimate admitted 10, then 4 more 30 s later.
    key = make_key(rpm=10)
    assert await admitted_count(limiter, key, 10, now=T0) == 10
    for half_seconds in range(60, 122):  # from T0 + 30 to T0 + 60.5
        assert await admitted_count(limiter, key, 1, now=T0 + half_seconds / 2) == 0
    assert await admitted_count(limiter, key, 12, now=T0 + 61) == 10


async def test_issue_12_rpm_5_never_admits_6_in_60_seconds(limiter):
    # Five at the end of one minute let a sixth in 23 s later, early in the next.
    key = make_key(rpm=5)
    admitted = []
    for tenth in range(0, 1500, 3):  # a request every 0.3 s for 150 s, from :59
        now = MINUTE + 59 + tenth / 10
        try:
            await limiter.admit(key, None, 0, now=now)
            admitted.append(now)
        except RateLimited:
            pass
    assert all(later - earlier > 60 for earlier, later in zip(admitted, admitted[5:])), admitted
    # Four in second :59 and one in :00; the sixth when :59 has left the window, 61 s on.
    assert admitted[5] == pytest.approx(MINUTE + 59 + 61.2) and len(admitted) == 15


async def test_reset_is_never_longer_than_the_window_plus_a_bucket(limiter):
    key = make_key(rpm=1000)
    for tenth in range(0, 1000, 7):
        ticket = await limiter.admit(key, None, 0, now=T0 + tenth / 10)
        reset = ticket.headers["x-ratelimit-reset-requests"]
        seconds = (60 + float(reset[2:-1])) if reset.startswith("1m") else float(reset[:-1])
        assert 60 < seconds <= 61


async def test_a_settlement_after_its_bucket_left_the_window_changes_nothing(limiter):
    key = make_key(tpm=1000)
    ticket = await limiter.admit(key, None, 900, now=T0)
    second = await limiter.admit(key, None, 1000, now=T0 + 61)
    await limiter.settle(ticket, 0)  # T0's bucket is gone: not taken off the new window
    with pytest.raises(RateLimited):
        await limiter.admit(key, None, 1, now=T0 + 61)
    await limiter.settle(second, 600)
    assert (await limiter.admit(key, None, 400, now=T0 + 62)
            ).headers["x-ratelimit-remaining-tokens"] == "0"


def arrivals(rng: random.Random, minutes: int):
    """Arrival times: bursts, lulls and steady trickles, over ``minutes``."""
    now, end = T0, T0 + 60 * minutes
    while now < end:
        now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.5, 1.0, 2.5, rng.uniform(0, 20)])
        yield now


@pytest.mark.parametrize("seed", range(6))
async def test_random_arrivals_never_exceed_a_limit_and_refusals_are_tight(seed):
    """Two keys of one customer, with rpm and tpm each and the customer's too, for five
    minutes of random arrivals; token estimates settled (lower) at random later times and
    some requests released. After every admission no 60 s hold more than a limit; every
    refused request would have exceeded one in the buckets it was checked against."""
    rng = random.Random(seed)
    limiter = RateLimiter(MemoryCounters())
    keys = [make_key(1, rpm=rng.choice([3, 10, 40]), tpm=rng.choice([500, 2000])),
            make_key(2, rpm=rng.choice([5, 20]), tpm=None)]
    customer = (rng.choice([8, 30, None]), rng.choice([1500, 4000]))
    logs = {"k1r": LimitLog(keys[0].rpm), "k1t": LimitLog(keys[0].tpm),
            "k2r": LimitLog(keys[1].rpm)}
    if customer[0] is not None:
        logs["cr"] = LimitLog(customer[0])
    logs["ct"] = LimitLog(customer[1])
    pending = []  # (when, ticket, [admissions of its tokens], actual tokens)
    refused = 0
    for now in arrivals(rng, 5):
        while pending and pending[0][0] <= now:
            _, ticket, entries, actual = pending.pop(0)
            await limiter.settle(ticket, actual)
            for e in entries:
                e.amount = actual if now < e.second + 61 else e.amount
        which = rng.randrange(2)
        key, tokens = keys[which], rng.choice([0, 10, 100, 400, 900])
        mine = {f"k{which + 1}r": 1, "cr": 1, "ct": tokens}
        if which == 0:
            mine["k1t"] = tokens
        mine = {k: v for k, v in mine.items() if k in logs}
        try:
            ticket = await limiter.admit(key, customer, tokens, now=now)
        except RateLimited as err:
            refused += 1
            assert any(logs[k].in_window(now) + amount > logs[k].limit
                       for k, amount in mine.items()), (now, err.message)
            continue
        entries = {k: logs[k].add(now, ticket.second, amount) for k, amount in mine.items()}
        assert ticket.second == int(now)
        for log in logs.values():
            log.check()
        if rng.random() < 0.05:  # refused later, e.g. by its budget
            await limiter.release(ticket)
            for e in entries.values():
                e.amount = 0
        elif tokens:
            token_entries = [e for k, e in entries.items() if k.endswith("t")]
            later = now + rng.choice([0.0, 1.0, 30.0, 65.0])
            pending.append((later, ticket, token_entries, rng.randrange(tokens + 1)))
            pending.sort(key=lambda p: p[0])
    for log in logs.values():
        log.check()
    assert refused > 0 and all(log.admitted for log in logs.values())


@pytest.mark.parametrize("seed", range(4))
async def test_a_client_that_waits_retry_after_is_admitted_and_not_sooner(seed):
    rng = random.Random(seed)
    limiter = RateLimiter(MemoryCounters())
    key = make_key(rpm=rng.choice([1, 5, 12]), tpm=rng.choice([1000, 5000]))
    checked, latest = 0, T0
    for now in arrivals(rng, 30):
        if now < latest:  # the clock went on while this client waited
            continue
        tokens = rng.choice([1, 50, 300, 999])
        try:
            await limiter.admit(key, None, tokens, now=now)
            continue
        except RateLimited as err:
            wait = err.retry_after
            assert 0 < wait <= 61
            assert int(err.headers["retry-after-ms"]) == round(wait * 1000)
            assert int(err.headers["retry-after"]) == math.ceil(wait)
        if wait > 0.002:  # a millisecond sooner it does not fit yet
            with pytest.raises(RateLimited):
                await limiter.admit(key, None, tokens, now=now + wait - 0.002)
        await limiter.admit(key, None, tokens, now=now + wait)
        checked, latest = checked + 1, now + wait
    assert checked > 10


async def test_a_request_larger_than_the_limit_is_refused_whenever_it_comes(limiter):
    key = make_key(rpm=100, tpm=1000)
    for offset in (0, 30, 61, 3600):
        with pytest.raises(RateLimited, match="larger than"):
            await limiter.admit(key, None, 1001, now=T0 + offset)
    await limiter.admit(key, None, 1000, now=T0 + 3600)
