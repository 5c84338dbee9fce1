"""Requests and tokens per minute, per key and per customer: a limit is never exceeded.

The promise: for each limit, what was admitted in any 60 seconds adds up to at most the
limit. Each limit keeps one-second buckets; a request at time ``t`` is counted in bucket
``floor(t)``, and admitted only if the buckets of seconds ``floor(t) - 60 … floor(t)`` plus
its own amount stay within the limit. Why it holds: in any 60 s, take the request counted
last, in second s; the others in those 60 s were counted before it (so in seconds <= s) and
less than 60 s earlier (so in seconds >= s - 60): its check summed them all, with its own.

So a request counts against its limit from its admission until its bucket leaves the window,
60 to 61 seconds later, and a request is refused only if its amount does not fit in what the
last 61 seconds hold (the promise is tight up to one bucket). A request larger than its
limit never fits. Seconds never go back within a limit: a request that read the clock before
another of a newer second reached the counters is counted in that newer second (each
request counts at a moment between its arrival and its answer), which also covers replicas
whose clocks differ slightly. Tokens are counted as the request's estimate (prompt estimate
plus its maximum output) and corrected to the actual count when the call ends, in the same
bucket; a correction upwards (a prompt estimated too low) cannot be refused after the fact,
so the promise for tokens is about what was counted at admission.

All limits of a request go through one ``window_admit`` (``counters.py``): all admitted or
none, so a refused request consumes no quota. Its verdict carries what the headers say:
``x-ratelimit-remaining-*`` is the limit minus the window's total after this request,
``x-ratelimit-reset-*`` the time until the window holds nothing counted now (at most 61 s),
and a refusal's ``retry-after`` the time until enough buckets have left the window for this
request to fit if nothing else arrives (a client that waits that long is admitted).

Leases, under ``serve --workers`` and between replicas on Redis: see ``leases.py``. Redis
down: each replica counts its share of every limit itself (``fallback.py``).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from modelmart.core.errors import RateLimited
from modelmart.store.records import ApiKey

from .fallback import DOWN, FallbackCounters
from .leases import Leases

NEVER_FITS_RETRY = 60.0  # retry-after for a request larger than its limit: "not like this"


@dataclass(slots=True)
class _Limit:
    """One limit of a key or customer."""

    unit: str  # "requests" | "tokens"
    who: str  # "key mm-abc1234" / "customer acme", for messages
    name: str  # its window: "rl:k12:r" / "rl:c3:t"
    limit: int
    limit_text: str = ""  # for the headers

    def __post_init__(self) -> None:
        self.limit_text = str(self.limit)


@dataclass(slots=True)
class _Limits:
    """The limits of a key and its customer; cached while the key's settings stay the same."""

    all: list[_Limit]
    requests: list[str]  # the windows of its request limits
    tokens: list[str]  # ... and of its token limits


@dataclass(slots=True)
class Ticket:
    """What ``admit`` counted, and in which second; ``settle`` corrects the token estimate
    in that bucket."""

    estimated_tokens: int
    second: int = 0
    token_counters: list[str] = field(default_factory=list)
    request_counters: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    counters: object = None  # the backend that counted it, when it may change (fallback.py)


class RateLimiter:
    def __init__(self, counters, clock: Callable[[], float] = time.time) -> None:
        self._counters = counters
        self._clock = clock
        # The limits of a key (and its customer): keys are reloaded, not edited, so their
        # settings are part of the cache key.
        self._limits: dict[tuple, _Limits] = {}
        # Redis, or this replica's own counters while Redis is down.
        self._fallback = counters if isinstance(counters, FallbackCounters) else None
        # Only with counters that lease: the workers' coordinator, Redis.
        shared = counters.primary if self._fallback is not None else counters
        self._leases = (Leases(shared, clock) if hasattr(shared, "window_lease")
                        and getattr(shared, "leases", True) else None)
        self._reset = (-1, "")  # the last reset header value: (milliseconds, text)

    async def admit(self, key: ApiKey, customer_limits: tuple[int | None, int | None] | None,
                    estimated_tokens: int, now: float | None = None) -> Ticket:
        now = self._clock() if now is None else now
        limits = self._limits_for(key, customer_limits)
        if not limits.all:
            return Ticket(estimated_tokens)
        second = math.floor(now)
        items = [(l.name, 1 if l.unit == "requests" else estimated_tokens, l.limit)
                 for l in limits.all]
        counted_on = None
        if self._fallback is not None:
            counted_on, verdict = await self._admit_shared(items, second)
        elif self._leases is None:
            verdict = await self._counters.window_admit(items, second)
        else:
            verdict = await self._leases.admit(items, second)
        admitted, at, totals, clear_at, fits_at = verdict
        if not admitted:
            raise self._refusal(limits.all, items, totals, clear_at, fits_at, now)
        return Ticket(estimated_tokens, at, limits.tokens[:], limits.requests[:],
                      self._headers(limits.all, totals, clear_at, now), counted_on)

    async def _admit_shared(self, items, second: int) -> tuple[object, list]:
        """Through Redis (leases or not); while it is down, this replica's share of each
        limit in its own counters, with totals shifted so the headers count down to 0."""
        fallback = self._fallback
        if fallback.local is None:
            shared = fallback.primary
            try:
                if self._leases is None:
                    return shared, await shared.window_admit(items, second)
                return shared, await self._leases.admit(items, second)
            except DOWN as exc:
                fallback.fail(exc)
        local = fallback.local
        shares = [fallback.share_of(limit) for _, _, limit in items]
        verdict = await local.window_admit(
            [(name, amount, share) for (name, amount, _), share in zip(items, shares)], second)
        verdict[2] = [total + limit - share
                      for total, (_, _, limit), share in zip(verdict[2], items, shares)]
        return local, verdict

    def _limits_for(self, key: ApiKey, customer_limits) -> _Limits:
        cache_key = (key.id, key.rpm, key.tpm, key.prefix, key.customer_id, key.customer_name,
                     customer_limits)
        limits = self._limits.get(cache_key)
        if limits is None:
            if len(self._limits) > 10_000:
                self._limits.clear()
            every = [_Limit(*spec) for spec in _limit_specs(key, customer_limits)]
            limits = self._limits[cache_key] = _Limits(
                every, [l.name for l in every if l.unit == "requests"],
                [l.name for l in every if l.unit == "tokens"])
        return limits

    async def close(self) -> None:
        """Give back what this worker's leases hold (before the counters close)."""
        if self._leases is not None:
            await self._leases.close()

    async def settle(self, ticket: Ticket, actual_tokens: int) -> None:
        """Correct the token estimate to the actual count, in the bucket it was counted in
        (nothing to correct once that bucket has left the window)."""
        difference = actual_tokens - ticket.estimated_tokens
        if difference and ticket.token_counters:
            await self._add(ticket, ticket.token_counters, difference)
        ticket.estimated_tokens = actual_tokens

    async def release(self, ticket: Ticket) -> None:
        """Give back everything ``admit`` counted: for a request refused later (its budget)."""
        await self.settle(ticket, 0)
        if ticket.request_counters:
            await self._add(ticket, ticket.request_counters, -1)
        ticket.request_counters = []

    async def _add(self, ticket: Ticket, names: list[str], delta: int) -> None:
        counters, second = ticket.counters or self._counters, ticket.second
        try:
            if len(names) == 1:
                await counters.window_add(names[0], second, delta)
            else:
                await asyncio.gather(*(counters.window_add(n, second, delta) for n in names))
        except DOWN as exc:
            if self._fallback is None:
                raise
            # Counted in Redis, which is gone: the count stays as admitted (conservative).
            self._fallback.fail(exc)

    def _reset_text(self, seconds: float) -> str:
        # Requests of the same millisecond share it: formatting is most of a header's cost.
        ms = math.ceil(seconds * 1000)
        if ms != self._reset[0]:
            self._reset = (ms, format_ms(ms))
        return self._reset[1]

    def _headers(self, limits: list[_Limit], totals: list[int], clear_at: list[int],
                 now: float) -> dict[str, str]:
        if len(limits) == 1:
            l = limits[0]
            limit_name, remaining_name, reset_name = _HEADER_NAMES[l.unit]
            return {limit_name: l.limit_text, remaining_name: str(max(0, l.limit - totals[0])),
                    reset_name: self._reset_text(max(0.0, clear_at[0] - now))}
        headers: dict[str, str] = {}
        for unit, (limit_name, remaining_name, reset_name) in _HEADER_NAMES.items():
            # Of several limits of a unit, the tightest is the one to pace oneself by.
            tightest, room = None, 0
            for i, l in enumerate(limits):
                if l.unit == unit and (tightest is None or l.limit - totals[i] < room):
                    tightest, room = i, l.limit - totals[i]
            if tightest is not None:
                headers[limit_name] = limits[tightest].limit_text
                headers[remaining_name] = str(max(0, room))
                headers[reset_name] = self._reset_text(max(0.0, clear_at[tightest] - now))
        return headers

    def _refusal(self, limits: list[_Limit], items, totals: list[int], clear_at: list[int],
                 fits_at: int, now: float) -> RateLimited:
        refused = [(l, amount) for l, (_, amount, _), total in zip(limits, items, totals)
                   if total + amount > l.limit]
        first, amount = refused[0] if refused else (limits[0], items[0][1])
        if fits_at < 0:  # larger than a limit: waiting does not help
            first, amount = next(((l, a) for l, a in refused if a > l.limit), (first, amount))
            message = (f"rate limit exceeded: request of {amount} {first.unit} is larger "
                       f"than {first.who}'s limit of {first.limit} {first.unit} per minute")
            wait_ms = int(NEVER_FITS_RETRY * 1000)
        else:
            message = (f"rate limit exceeded: {first.who} allows {first.limit} {first.unit} "
                       f"per minute")
            # Rounded up to a millisecond (and past float rounding): waiting this long is
            # enough.
            wait_ms = max(1, math.ceil((fits_at - now) * 1000))
            if now + wait_ms / 1000 < fits_at:
                wait_ms += 1
        headers = self._headers(limits, totals, clear_at, now)
        headers["retry-after"] = str(max(1, math.ceil(wait_ms / 1000)))
        headers["retry-after-ms"] = str(wait_ms)
        return RateLimited(message, retry_after=wait_ms / 1000, headers=headers)


def _limit_specs(key: ApiKey, customer_limits) -> list[tuple[str, str, str, int]]:
    who = f"key {key.prefix}"
    wanted = [("requests", who, f"rl:k{key.id}:r", key.rpm),
              ("tokens", who, f"rl:k{key.id}:t", key.tpm)]
    if customer_limits is not None and key.customer_id is not None:
        rpm, tpm = customer_limits
        customer = f"customer {key.customer_name or key.customer_id}"
        wanted += [("requests", customer, f"rl:c{key.customer_id}:r", rpm),
                   ("tokens", customer, f"rl:c{key.customer_id}:t", tpm)]
    return [spec for spec in wanted if spec[3] is not None]


def format_ms(ms: int) -> str:
    """OpenAI's header format for a duration in whole milliseconds: ``20ms``, ``1.5s``,
    ``1m0.75s``, ``6m0s``."""
    if ms < 1000:
        return f"{ms}ms"
    seconds, fraction = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    text = f"{seconds}.{fraction:03d}".rstrip("0") if fraction else str(seconds)
    return f"{minutes}m{text}s" if minutes else f"{text}s"


def format_duration(seconds: float) -> str:
    """``format_ms``, rounded up to a millisecond: never a shorter wait than the true one."""
    return format_ms(math.ceil(seconds * 1000))


_HEADER_NAMES = {unit: (f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}",
                        f"x-ratelimit-reset-{unit}") for unit in ("requests", "tokens")}
