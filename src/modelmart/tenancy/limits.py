"""Requests-per-minute and tokens-per-minute limits, per key and per customer.

Sliding-window counting: one counter per limit and fixed minute, and the estimate for "the
last 60 seconds" is the current minute's count plus the previous minute's count weighted by
how much of it still overlaps the sliding window. The previous minute is closed, so reading
it and then adding to the current minute against ``limit - previous_share`` is atomic
enough: the only thing that can change the previous count is a token settlement.

All limits of a request (rpm and tpm, per key and per customer) go through one
``try_add_all``: all admitted or none, so a refused request consumes no quota.

Leases, under ``serve --workers``: see ``leases.py``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from modelmart.core.errors import RateLimited
from modelmart.store.records import ApiKey

from .leases import Leases

WINDOW = 60.0
COUNTER_TTL = 2 * WINDOW + 10  # the current minute is read again as "previous" next minute
# A previous minute read this long after it closed is final (stragglers from other replicas
# have landed), so it can be cached for the rest of the minute.
SETTLE_DELAY = 2.0


@dataclass(slots=True)
class _Limit:
    """One limit of a key or customer; cached while the key's settings stay the same."""

    unit: str  # "requests" | "tokens"
    who: str  # "key mm-abc1234" / "customer acme", for messages
    ident: str  # counter id: "k12" / "c3"
    limit: int
    window: int = -1  # the minute ``names`` are of
    names: tuple[str, str] = ("", "")

    def at(self, window: int) -> tuple[str, str]:
        """The counters of minute ``window`` and of the one before. A request keeps them
        (a limit is shared by concurrent requests, which may be in different minutes)."""
        if window != self.window:
            tag = f"rl:{self.ident}:{self.unit[0]}:"
            self.window, self.names = window, (f"{tag}{window}", f"{tag}{window - 1}")
        return self.names


@dataclass(slots=True)
class Ticket:
    """What ``admit`` charged; ``settle`` corrects the token estimate with it."""

    estimated_tokens: int
    token_counters: list[str] = field(default_factory=list)
    request_counters: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Outcome:
    limit: _Limit
    amount: int  # what this request adds: 1 request, or its estimated tokens
    previous: int  # the previous minute's count
    share: int  # its weighted share in the sliding window, rounded up
    admitted: bool
    value: int  # the current minute's count after (or, if refused, without) this request
    current: str  # the current minute's counter


class RateLimiter:
    def __init__(self, counters) -> None:
        self._counters = counters
        self._previous: dict[str, int] = {}  # cache of closed minutes' counts
        self._previous_window = -1
        # The limits of a key (and its customer): keys are reloaded, not edited, so their
        # settings are part of the cache key.
        self._limits: dict[tuple, list[_Limit]] = {}
        # Only with counters that lease: the workers' coordinator.
        self._leases = (Leases(counters, WINDOW, COUNTER_TTL) if hasattr(counters, "lease_all")
                        else None)

    async def admit(self, key: ApiKey, customer_limits: tuple[int | None, int | None] | None,
                    estimated_tokens: int, now: float | None = None) -> Ticket:
        now = time.time() if now is None else now
        window = int(now // WINDOW)
        elapsed = now - window * WINDOW
        limits = self._limits_for(key, customer_limits)
        ticket = Ticket(estimated_tokens)
        if not limits:
            return ticket
        outcomes = await self._try_all(limits, estimated_tokens, window, elapsed)
        if not outcomes[0].admitted:
            raise _refusal(outcomes, elapsed)
        for o in outcomes:
            counters = ticket.token_counters if o.limit.unit == "tokens" else ticket.request_counters
            counters.append(o.current)
        ticket.headers = _headers(outcomes, elapsed)
        return ticket

    def _limits_for(self, key: ApiKey, customer_limits) -> list[_Limit]:
        cache_key = (key.id, key.rpm, key.tpm, key.prefix, key.customer_id, key.customer_name,
                     customer_limits)
        limits = self._limits.get(cache_key)
        if limits is None:
            if len(self._limits) > 10_000:
                self._limits.clear()
            limits = self._limits[cache_key] = [
                _Limit(*spec) for spec in _limit_specs(key, customer_limits)]
        return limits

    async def close(self) -> None:
        """Give back what this worker's leases hold (before the counters close)."""
        if self._leases is not None:
            await self._leases.close()

    async def settle(self, ticket: Ticket, actual_tokens: int) -> None:
        difference = actual_tokens - ticket.estimated_tokens
        if difference and ticket.token_counters:
            await asyncio.gather(*(self._counters.add(c, difference, COUNTER_TTL)
                                   for c in ticket.token_counters))

    async def release(self, ticket: Ticket) -> None:
        """Give back everything ``admit`` took: for a request refused later (its budget)."""
        await self.settle(ticket, 0)
        if ticket.request_counters:
            await asyncio.gather(*(self._counters.add(c, -1, COUNTER_TTL)
                                   for c in ticket.request_counters))
        ticket.request_counters = []

    async def _try_all(self, limits: list[_Limit], tokens: int, window: int,
                       elapsed: float) -> list[_Outcome]:
        if window != self._previous_window:
            self._previous.clear()
            self._previous_window = window
        names = [limit.at(window) for limit in limits]  # before any await
        try:
            previous = [self._previous[n[1]] for n in names]  # closed minutes, once settled
        except KeyError:
            previous = await self._previous_counts([n[1] for n in names], elapsed)
        weight = 1.0 - elapsed / WINDOW
        amounts = [1 if l.unit == "requests" else tokens for l in limits]
        shares = [math.ceil(p * weight) for p in previous]
        items = [(n[0], a, l.limit - s) for n, l, a, s in zip(names, limits, amounts, shares)]
        if self._leases is None:
            admitted, values = await self._counters.try_add_all(items, COUNTER_TTL)
        else:
            admitted, values = await self._leases.try_add_all(items, window, elapsed)
        return [_Outcome(l, a, p, s, admitted, v, n[0])
                for n, l, a, p, s, v in zip(names, limits, amounts, previous, shares, values)]

    async def _previous_counts(self, counters: list[str], elapsed: float) -> list[int]:
        missing = [c for c in counters if c not in self._previous]
        if len(missing) == 1:  # no tasks for one read
            values = [await self._counters.get(missing[0])]
        else:
            values = await asyncio.gather(*(self._counters.get(c) for c in missing))
        fresh = dict(zip(missing, values))
        if elapsed >= SETTLE_DELAY and not (self._leases and self._leases.returning):
            self._previous.update(fresh)
        return [fresh[c] if c in fresh else self._previous[c] for c in counters]


def _limit_specs(key: ApiKey, customer_limits) -> list[tuple[str, str, str, int]]:
    who = f"key {key.prefix}"
    wanted = [("requests", who, f"k{key.id}", key.rpm), ("tokens", who, f"k{key.id}", key.tpm)]
    if customer_limits is not None and key.customer_id is not None:
        rpm, tpm = customer_limits
        customer = f"customer {key.customer_name or key.customer_id}"
        wanted += [("requests", customer, f"c{key.customer_id}", rpm),
                   ("tokens", customer, f"c{key.customer_id}", tpm)]
    return [spec for spec in wanted if spec[3] is not None]


def seconds_until_fits(previous: int, current: int, elapsed: float, limit: int,
                       amount: int) -> float:
    """How long until ``amount`` fits, if no other request arrives meanwhile.

    Within this minute the previous minute's share shrinks linearly; if even the current
    minute alone leaves no room, wait into the next minute, where this one becomes the
    shrinking share.
    """
    if amount > limit:
        return WINDOW  # can never fit; a minute is the honest "not now"
    room = limit - current - amount
    if room >= 0:
        if previous <= 0:
            return 0.0
        return max(0.0, WINDOW * (1 - room / previous) - elapsed)
    into_next = WINDOW * (1 - (limit - amount) / current)
    return (WINDOW - elapsed) + max(0.0, into_next)


def _reset_seconds(outcome: _Outcome, elapsed: float) -> float:
    """Until the window holds nothing of what was counted so far: OpenAI's "reset"."""
    if outcome.value > 0:
        return 2 * WINDOW - elapsed
    if outcome.previous > 0:
        return WINDOW - elapsed
    return 0.0


def format_duration(seconds: float) -> str:
    """OpenAI's header format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{round(rest, 3):g}s"
    return f"{int(minutes)}m{rest_text}" if minutes else rest_text


_HEADER_NAMES = {unit: (f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}",
                        f"x-ratelimit-reset-{unit}") for unit in ("requests", "tokens")}


def _headers(outcomes: list[_Outcome], elapsed: float) -> dict[str, str]:
    if len(outcomes) == 1:  # one limit: it is the tightest
        o = outcomes[0]
        limit_name, remaining_name, reset_name = _HEADER_NAMES[o.limit.unit]
        return {limit_name: str(o.limit.limit),
                remaining_name: str(max(0, o.limit.limit - o.share - o.value)),
                reset_name: format_duration(_reset_seconds(o, elapsed))}
    headers: dict[str, str] = {}
    for unit in ("requests", "tokens"):
        mine = [o for o in outcomes if o.limit.unit == unit]
        if not mine:
            continue
        # The tightest limit is the one a client must pace itself by.
        tightest = min(mine, key=lambda o: o.limit.limit - o.share - o.value)
        remaining = max(0, tightest.limit.limit - tightest.share - tightest.value)
        headers[f"x-ratelimit-limit-{unit}"] = str(tightest.limit.limit)
        headers[f"x-ratelimit-remaining-{unit}"] = str(remaining)
        headers[f"x-ratelimit-reset-{unit}"] = format_duration(_reset_seconds(tightest, elapsed))
    return headers


def _refusal(outcomes: list[_Outcome], elapsed: float) -> RateLimited:
    refused = [o for o in outcomes if o.value + o.amount > o.limit.limit - o.share]
    refused = refused or outcomes  # defensive: the backend said no, so something is full
    waits = [seconds_until_fits(o.previous, o.value, elapsed, o.limit.limit, o.amount)
             for o in refused]
    retry_after = round(max(waits), 3)
    first, amount = refused[0].limit, refused[0].amount
    if amount > first.limit:
        message = (f"rate limit exceeded: request of {amount} {first.unit} is larger "
                   f"than {first.who}'s limit of {first.limit} {first.unit} per minute")
    else:
        message = (f"rate limit exceeded: {first.who} allows {first.limit} {first.unit} "
                   f"per minute")
    headers = _headers(outcomes, elapsed)
    headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    headers["retry-after-ms"] = str(math.ceil(retry_after * 1000))
    return RateLimited(message, retry_after=retry_after, headers=headers)
