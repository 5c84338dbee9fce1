"""Requests-per-minute and tokens-per-minute limits, per key and per customer.

Sliding-window counting: one counter per limit and fixed minute, and the estimate for "the
last 60 seconds" is the current minute's count plus the previous minute's count weighted by
how much of it still overlaps the sliding window. The previous minute is closed, so reading
it and then adding to the current minute against ``limit - previous_share`` is atomic
enough: the only thing that can change the previous count is a token settlement.

All limits of a request (rpm and tpm, per key and per customer) go through one
``try_add_all``: all admitted or none, so a refused request consumes no quota.

Leases (``serve --workers``, whose counters live in the coordinator): a round trip to the
coordinator for every request cost two workers ~15 % of their throughput, so a worker asks
to hold up to ``LEASE`` times a request's amounts when a counter has room to spare, and
admits the next requests from what it holds; it tops the lease up in the background when
half of it is gone, and doubles its size (up to ``MAX_LEASE``) whenever requests had to
wait for a trip. Leases are charged to the counter when granted, so a limit is never
exceeded. The coordinator lets a worker hold at most 1/16 of the room left divided among
the workers (counting what it already holds), and a worker makes one trip at a time for a
set of counters (requests that find its lease short wait for that trip, then look again; if
it fails, they fail with it), counting what other trips under way have asked for (keys of
one customer share its counters): a counter near its limit leases nothing and is exact;
far from it, a request can be refused while that much is still unused elsewhere. Unused
leases go back when the minute ends (a timer in each worker, or its first request of the
next minute), and a lease granted after its minute ended goes back at once. A trip's answer
is filed even if its request was cancelled meanwhile (the request's units are then held
too); a worker that dies, or a trip that gets no answer, leaves what was leased counted for
the rest of that minute. The
``x-ratelimit-remaining`` headers of a request admitted from a lease are this worker's view
(the count when it last asked, plus what it handed out since).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from modelmart.core.errors import RateLimited
from modelmart.store.records import ApiKey

log = logging.getLogger(__name__)

WINDOW = 60.0
COUNTER_TTL = 2 * WINDOW + 10  # the current minute is read again as "previous" next minute
# A previous minute read this long after it closed is final (stragglers from other replicas
# have landed), so it can be cached for the rest of the minute.
SETTLE_DELAY = 2.0
LEASE = 32  # a lease: up to this many times what the request needs, at first
MAX_LEASE = 1024  # ... and at most, for a worker with that many requests at once


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
        self._leases = _Leases(counters) if hasattr(counters, "lease_all") else None

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


class _Leases:
    """One worker's leases of the current minute's counters (see the module docstring)."""

    def __init__(self, counters) -> None:
        self._counters = counters
        self.window = -1  # the minute ``held`` is of
        # counter -> [units leased and not handed out yet, the count as this worker sees it,
        # what it held after its last trip]
        self.held: dict[str, list[int]] = {}
        # Trips under way, by the counters they are for, and the spare asked for by counter
        # (requests of several keys share their customer's counters).
        self._asking: dict[tuple[str, ...], asyncio.Future] = {}
        self._asked: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._ends_at: float | None = None  # the loop's time when ``window`` ends
        self._returns: set[asyncio.Task] = set()
        self._refills: set[asyncio.Task] = set()
        self._trips: set[asyncio.Future] = set()  # answers not in yet
        # How much a set of counters leases, in request amounts: ``LEASE`` at first, doubled
        # (up to ``MAX_LEASE``) each time requests had to wait for a trip.
        self._want: dict[tuple[str, ...], int] = {}
        self._short: set[tuple[str, ...]] = set()

    @property
    def returning(self) -> bool:
        """Unused leases are on their way back (a count read now may still hold them)."""
        return bool(self._returns)

    async def try_add_all(self, items: list[tuple[str, int, int]], window: int,
                          elapsed: float) -> tuple[bool, list[int]]:
        """``try_add_all`` from what this worker holds when that covers every item, else
        from the coordinator: one trip at a time for a set of counters (the others wait for
        it, then look again; if it fails, they fail with it), counting what is held towards
        the request and asking to hold up to ``LEASE`` times the request's amounts."""
        if window > self.window:
            self._roll(window)
        keys = tuple(key for key, _, _ in items)
        while True:
            got = [self.held.get(key) for key in keys] if window == self.window else [None] * len(keys)
            if all(h is not None and h[0] >= amount and h[1] + amount <= limit
                   for h, (_, amount, limit) in zip(got, items)):
                values = []
                low = False
                half = self._want.get(keys, LEASE) // 2
                for h, (_, amount, _) in zip(got, items):
                    h[0] -= amount
                    h[1] += amount
                    values.append(h[1])
                    # Half of what it wants, or of what the coordinator let it hold (less
                    # near a limit: then topping up at every request would gain nothing).
                    low = low or (h[0] < amount * half and h[0] < h[2] // 2)
                if low and keys not in self._asking:  # top up before it runs out
                    self._refill(keys, items, window, elapsed)
                return True, values
            asking = self._asking.get(keys)
            if asking is None:
                break
            self._short.add(keys)  # demand outran the lease: the next trip asks for more
            await asyncio.shield(asking)  # raises what the trip raised
        return await self._trip(keys, self._asked_for(keys), items, got, window, elapsed)

    def _asked_for(self, keys: tuple[str, ...]) -> asyncio.Future:
        """Mark a trip for ``keys`` as under way: requests short of them wait for it."""
        asking = self._asking[keys] = asyncio.get_running_loop().create_future()
        asking.add_done_callback(_retrieved)
        return asking

    def _refill(self, keys, items, window: int, elapsed: float) -> None:
        """A trip for the lease alone (no request's amounts), in the background, while the
        worker still admits from what it holds: requests need not wait for a trip."""
        if window != self.window:
            return
        task = asyncio.ensure_future(self._trip(keys, self._asked_for(keys), items, None,
                                                window, elapsed))
        self._refills.add(task)  # kept referenced until done; failures go to the waiters
        task.add_done_callback(self._refilled)

    def _refilled(self, task: asyncio.Task) -> None:
        self._refills.discard(task)
        if not task.cancelled():
            task.exception()  # the waiters, if any, got it

    async def _trip(self, keys, asking: asyncio.Future, items, got, window: int,
                    elapsed: float) -> tuple[bool, list[int]]:
        loop = asyncio.get_running_loop()
        try:
            result = await self._ask(keys, items, got, window, elapsed, loop)
        except BaseException as exc:
            if not asking.done():
                if isinstance(exc, Exception):
                    asking.set_exception(exc)
                else:  # cancelled: the others try for themselves
                    asking.set_result(None)
            raise
        finally:
            del self._asking[keys]
            if not asking.done():
                asking.set_result(None)
        return result

    async def _ask(self, keys, items, got, window: int, elapsed: float,
                   loop: asyncio.AbstractEventLoop) -> tuple[bool, list[int]]:
        if window == self.window:
            self._ends_at = loop.time() + WINDOW - elapsed
        want = self._want.get(keys, LEASE)
        if keys in self._short:  # requests waited for the last trip: lease more
            self._short.discard(keys)
            want = self._want[keys] = min(MAX_LEASE, 2 * want)
        refill = got is None  # for the lease alone: ``items`` only size it
        if refill:
            got = [self.held.get(key) for key, _, _ in items]
        taken = []
        for h, (_, amount, _) in zip(got, items):
            take = min(h[0], amount) if h is not None and not refill else 0
            if take:
                h[0] -= take  # this request's now, whoever else looks meanwhile
            taken.append(take)
        asked = self._asked
        asks = []
        for (key, amount, limit), take, h in zip(items, taken, got):
            spare = 0
            holding = (h[0] if h else 0) + asked.get(key, 0)  # with what trips under way ask
            if window == self.window:  # a late request of a past minute keeps nothing
                spare = max(0, amount * want - holding)
                asked[key] = asked.get(key, 0) + spare
            asks.append((key, 0 if refill else amount - take, limit, spare, holding))
        # A task of its own, so that a request cancelled meanwhile still files the answer.
        trip = asyncio.ensure_future(self._counters.lease_all(asks, COUNTER_TTL))
        self._trips.add(trip)
        trip.add_done_callback(self._trips.discard)
        state: list[str] = []  # "filed" once answered; "abandoned" if the request went first
        trip.add_done_callback(lambda t: self._answered(t, items, asks, taken, window, state))
        try:
            admitted, values, leased = await asyncio.shield(trip)
        except asyncio.CancelledError:
            if (state == ["filed"] and not trip.cancelled() and trip.exception() is None
                    and trip.result()[0]):
                # Answered and admitted in the turn the request was cancelled in: what it
                # was given is held rather than lost.
                self._keep(window, [(key, take + asked)
                                    for (key, asked, _, _, _), take in zip(asks, taken)])
            state.append("abandoned")
            raise
        if not admitted:
            return False, values
        if window == self.window:
            out = []
            for (key, _, _), v in zip(items, values):
                h = self.held.get(key) or self.held.setdefault(key, [0, 0, 0])
                h[1] = v - h[0]
                out.append(h[1])
            return True, out
        return True, [v - n for v, n in zip(values, leased)]

    def _answered(self, trip: asyncio.Future, items, asks, taken, window: int,
                  state: list[str]) -> None:
        """File a trip's answer, whether or not its request is still waiting for it: what
        was leased is held (or given back if its minute is over); if refused, or if the
        request was cancelled, what it took and what it was granted are held again; with
        no answer, what was taken is held again (what the coordinator may have charged is
        lost for the rest of the minute)."""
        for key, _, _, spare, _ in asks:
            left = self._asked.get(key, 0) - spare
            if left > 0:
                self._asked[key] = left
            else:
                self._asked.pop(key, None)
        abandoned = bool(state)
        state.append("filed")
        if trip.cancelled() or trip.exception() is not None:
            self._keep(window, [(key, take) for (key, _, _), take in zip(items, taken)])
            return
        admitted, _, leased = trip.result()
        if not admitted:
            self._keep(window, [(key, take) for (key, _, _), take in zip(items, taken)])
        elif abandoned:  # granted to a request that is gone: all it was given is held
            self._keep(window, [(key, take + asked + n)
                                for (key, asked, _, _, _), take, n in zip(asks, taken, leased)])
        else:
            self._keep(window, [(key, n) for (key, _, _), n in zip(items, leased)], top=True)

    def _keep(self, window: int, units: list[tuple[str, int]], top: bool = False) -> None:
        """Hold ``units`` of the counters (``top``: a trip's lease, after which what is held
        is noted), or give them back if their minute is over."""
        if window != self.window:
            self._give_back(units)
            return
        for key, n in units:
            h = self.held.get(key)
            if h is None:
                h = self.held[key] = [0, 0, 0]
            h[0] += n
            if top:
                h[2] = h[0]
        if self._timer is None and self._ends_at is not None and any(n for _, n in units):
            loop = asyncio.get_running_loop()  # give them back when the minute ends
            self._timer = loop.call_later(max(0.0, self._ends_at - loop.time()) + 0.05,
                                          self._expire, window)

    def _roll(self, window: int) -> None:
        """A new minute: what the old one's leases did not hand out goes back."""
        old, self.held, self.window = self.held, {}, window
        self._want, self._short = {}, set()  # the new minute's counters start afresh
        self._ends_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._give_back([(key, h[0]) for key, h in old.items()])

    async def close(self) -> None:
        """Give back everything held, before the counters close (the app's shutdown): what
        is held now, then what trips still under way bring (their minute is over)."""
        self._roll(self.window + 1)
        while self._refills or self._trips or self._returns:
            await asyncio.gather(*self._refills, *self._trips, *self._returns,
                                 return_exceptions=True)

    def _expire(self, window: int) -> None:
        self._timer = None
        if self.window == window:  # no request of the next minute has rolled them yet
            self._roll(window + 1)

    def _give_back(self, units: list[tuple[str, int]]) -> None:
        units = [(key, n) for key, n in units if n > 0]
        if not units:
            return
        counters = self._counters

        async def give_back() -> None:
            await asyncio.gather(*(counters.add(key, -n, COUNTER_TTL) for key, n in units))

        task = asyncio.ensure_future(give_back())
        self._returns.add(task)
        task.add_done_callback(self._returned)

    def _returned(self, task: asyncio.Task) -> None:
        self._returns.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("giving back unused rate-limit leases failed: %s", task.exception())


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # a failed trip nobody waited for is not an unhandled error


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
