"""Rate-limit leases: how a worker of ``serve --workers`` admits most requests without a
round trip to the coordinator that holds the windows (``limits.RateLimiter`` uses them when
its counters offer ``window_lease``).

A round trip to the coordinator for every request cost two workers ~15 % of their
throughput, so a worker asks to hold up to ``LEASE`` times a request's amounts when a window
has room to spare, and admits the next requests from what it holds. A lease is counted in
the bucket of the second it was granted in (checked like any request then) and lives for
that second only: a leased unit is handed out in the second it is counted in, so the
promise of ``limits.py`` holds for leased units as for any request. Unused units go back
(a negative ``window_add`` to that bucket) when the second ends: a timer in each worker, or
its first request of a later second; a lease granted for a second that is already over
goes back at once.

The worker tops its lease up in the background when half of it is gone, and doubles its
size (up to ``MAX_LEASE``) whenever requests had to wait for a trip while it held one. The
coordinator lets a worker hold at most 1/16 of the room left divided among the workers
(counting what it already holds), and a worker makes one trip at a time for a set of
windows and a second (requests that find its lease short wait for that trip, then look
again; if it fails, they fail with it; a request whose second is already over asks for
itself at once), counting what other trips under way have asked for
(keys of one customer share its windows): a window near its limit leases nothing and is
exact; far from it, a request can be refused while that much is still unused elsewhere,
for the rest of that second. A trip's answer is filed even if its request was cancelled
meanwhile (the request's units are then held too); a worker that dies, or a trip that gets
no answer, leaves what was leased counted until its bucket leaves the window. The
``x-ratelimit-remaining`` headers of a request admitted from a lease are this worker's view
(the window's total when it last asked, minus what it holds, plus what it handed out since).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from .counters import BUCKETS

log = logging.getLogger(__name__)

LEASE = 32  # a lease: up to this many times what the request needs, at first
MAX_LEASE = 1024  # ... and at most, for a worker with that many requests at once
TIMER_SLACK = 0.005  # the end-of-second timer fires this long after the second ends


class Leases:
    """One worker's leases of the current second's buckets."""

    def __init__(self, counters, clock: Callable[[], float]) -> None:
        self._counters = counters
        self._clock = clock  # the limiter's: the seconds requests are counted in
        self.second = -1  # the second ``held`` is of
        # window -> [units leased and not handed out yet, the window's total as this worker
        # sees it without them, what it held after its last trip]
        self.held: dict[str, list[int]] = {}
        # Trips under way, by second and windows, and the spare asked for by window
        # (requests of several keys share their customer's windows).
        self._asking: dict[tuple, asyncio.Future] = {}
        self._asked: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._returns: set[asyncio.Task] = set()
        self._refills: set[asyncio.Task] = set()
        self._trips: set[asyncio.Future] = set()  # answers not in yet
        # How much a set of windows leases, in request amounts: ``LEASE`` at first, doubled
        # (up to ``MAX_LEASE``) each time requests had to wait for a trip while it held one.
        self._want: dict[tuple[str, ...], int] = {}
        self._short: set[tuple[str, ...]] = set()

    @property
    def returning(self) -> bool:
        """Unused leases are on their way back."""
        return bool(self._returns)

    async def admit(self, items: list[tuple[str, int, int]], second: int) -> list:
        """``window_admit`` from what this worker holds when that covers every item, else
        from the coordinator: one trip at a time for a set of windows (the others wait for
        it, then look again; if it fails, they fail with it), counting what is held towards
        the request and asking to hold up to ``LEASE`` times the request's amounts."""
        if second > self.second:
            self._roll(second)
        keys = tuple(name for name, _, _ in items)
        while True:
            if second < self.second:
                # Its second ended before it got here (a busy loop) or while it waited for
                # a trip: nothing is leased for it any more, so it asks for itself at once.
                # Queued behind one another's trips (one at a time for a set of windows),
                # such requests waited seconds at concurrency 256.
                alone = asyncio.get_running_loop().create_future()
                alone.add_done_callback(_retrieved)
                return await self._trip(keys, alone, items, [None] * len(keys), second)
            current = second == self.second
            got = [self.held.get(name) for name in keys] if current else [None] * len(keys)
            if all(h is not None and h[0] >= amount and h[1] + amount <= limit
                   for h, (_, amount, limit) in zip(got, items)):
                return self._hand_out(keys, items, got, second)
            asking = self._asking.get((second, keys))
            if asking is None:
                break
            if any(h is not None for h in got):  # demand outran the lease: ask for more
                self._short.add(keys)
            await asyncio.shield(asking)  # raises what the trip raised
        return await self._trip(keys, self._asked_for(second, keys), items, got, second)

    def _hand_out(self, keys, items, got, second: int) -> list:
        values = []
        low = False
        half = self._want.get(keys, LEASE) // 2
        for h, (_, amount, _) in zip(got, items):
            h[0] -= amount
            h[1] += amount
            values.append(h[1])
            # Half of what it wants, or of what the coordinator let it hold (less near a
            # limit: then topping up at every request would gain nothing).
            low = low or (h[0] < amount * half and h[0] < h[2] // 2)
        if low and (second, keys) not in self._asking:  # top up before it runs out
            self._refill(keys, items, second)
        clear_at = [second + BUCKETS if v > 0 else 0 for v in values]
        return [True, second, values, clear_at, second]

    def _asked_for(self, second: int, keys: tuple[str, ...]) -> asyncio.Future:
        """Mark a trip for ``keys`` as under way: requests short of them wait for it."""
        asking = self._asking[second, keys] = asyncio.get_running_loop().create_future()
        asking.add_done_callback(_retrieved)
        return asking

    def _refill(self, keys, items, second: int) -> None:
        """A trip for the lease alone (no request's amounts), in the background, while the
        worker still admits from what it holds: requests need not wait for a trip."""
        task = asyncio.ensure_future(self._trip(keys, self._asked_for(second, keys), items,
                                                None, second))
        self._refills.add(task)  # kept referenced until done; failures go to the waiters
        task.add_done_callback(self._refilled)

    def _refilled(self, task: asyncio.Task) -> None:
        self._refills.discard(task)
        if not task.cancelled():
            task.exception()  # the waiters, if any, got it

    async def _trip(self, keys, asking: asyncio.Future, items, got, second: int) -> list:
        try:
            result = await self._ask(keys, items, got, second)
        except BaseException as exc:
            if not asking.done():
                if isinstance(exc, Exception):
                    asking.set_exception(exc)
                else:  # cancelled: the others try for themselves
                    asking.set_result(None)
            raise
        finally:
            if self._asking.get((second, keys)) is asking:
                del self._asking[second, keys]
            if not asking.done():
                asking.set_result(None)
        return result

    async def _ask(self, keys, items, got, second: int) -> list:
        want = self._want.get(keys, LEASE)
        if keys in self._short:  # requests waited for the last trip: lease more
            self._short.discard(keys)
            if len(self._want) > 10_000:
                self._want.clear()
            want = self._want[keys] = min(MAX_LEASE, 2 * want)
        refill = got is None  # for the lease alone: ``items`` only size it
        if refill:
            got = [self.held.get(name) for name, _, _ in items]
        taken = []
        for h, (_, amount, _) in zip(got, items):
            take = min(h[0], amount) if h is not None and not refill else 0
            if take:
                h[0] -= take  # this request's now, whoever else looks meanwhile
            taken.append(take)
        asked = self._asked
        asks = []
        for (name, amount, limit), take, h in zip(items, taken, got):
            spare = 0
            holding = (h[0] if h else 0) + asked.get(name, 0)  # with what trips under way ask
            if second == self.second:  # a late request of a past second keeps nothing
                spare = max(0, amount * want - holding)
                asked[name] = asked.get(name, 0) + spare
            asks.append((name, 0 if refill else amount - take, limit, spare, holding))
        # A task of its own, so that a request cancelled meanwhile still files the answer.
        trip = asyncio.ensure_future(self._counters.window_lease(asks, second))
        self._trips.add(trip)
        trip.add_done_callback(self._trips.discard)
        state: list[str] = []  # "filed" once answered; "abandoned" if the request went first
        trip.add_done_callback(lambda t: self._answered(t, items, asks, taken, second, state))
        try:
            admitted, at, totals, clear_at, fits_at, leased = await asyncio.shield(trip)
        except asyncio.CancelledError:
            if (state == ["filed"] and not trip.cancelled() and trip.exception() is None
                    and trip.result()[0]):
                # Answered and admitted in the turn the request was cancelled in: what it
                # was given is held rather than lost.
                self._keep_given(second, trip.result()[1], asks, taken, None)
            state.append("abandoned")
            raise
        if not admitted:
            return [False, at, totals, clear_at, fits_at]
        if any(taken):
            at = second  # partly counted in the lease's bucket: corrections go to the older
        if at == self.second:
            out = []
            for (name, _, _), v in zip(items, totals):
                h = self.held.get(name) or self.held.setdefault(name, [0, 0, 0])
                h[1] = v - h[0]
                out.append(h[1])
            return [True, at, out, clear_at, at]
        return [True, at, [v - n for v, n in zip(totals, leased)], clear_at, at]

    def _answered(self, trip: asyncio.Future, items, asks, taken, second: int,
                  state: list[str]) -> None:
        """File a trip's answer, whether or not its request is still waiting for it: what
        was leased is held (or given back if its second is over); if refused, or if the
        request was cancelled, what it took and what it was granted are held again; with
        no answer, what was taken is held again (what the coordinator may have counted is
        lost until its bucket leaves the window)."""
        for name, _, _, spare, _ in asks:
            left = self._asked.get(name, 0) - spare
            if left > 0:
                self._asked[name] = left
            else:
                self._asked.pop(name, None)
        abandoned = bool(state)
        state.append("filed")
        if trip.cancelled() or trip.exception() is not None:
            self._keep(second, [(name, take) for (name, _, _), take in zip(items, taken)])
            return
        admitted, at, *_, leased = trip.result()
        if not admitted:
            self._keep(second, [(name, take) for (name, _, _), take in zip(items, taken)])
        elif abandoned:  # granted to a request that is gone: all it was given is held
            self._keep_given(second, at, asks, taken, leased)
        else:
            self._keep(at, [(name, n) for (name, _, _), n in zip(items, leased)], top=True)

    def _keep_given(self, second: int, at: int, asks, taken, leased) -> None:
        """Hold (or give back) all a request that is gone was given: what it took from the
        lease of ``second``, and its amounts (with the lease, if not yet filed) of ``at``."""
        self._keep(second, [(name, take) for (name, *_), take in zip(asks, taken)])
        leased = leased or [0] * len(asks)
        self._keep(at, [(name, amount + n) for (name, amount, *_), n in zip(asks, leased)])

    def _keep(self, second: int, units: list[tuple[str, int]], top: bool = False) -> None:
        """Hold ``units`` of the windows (``top``: a trip's lease, after which what is held
        is noted), or give them back if their second is over."""
        if second != self.second:
            self._give_back(second, units)
            return
        for name, n in units:
            h = self.held.get(name)
            if h is None:
                h = self.held[name] = [0, 0, 0]
            h[0] += n
            if top:
                h[2] = h[0]
        if self._timer is None and any(n for _, n in units):
            self._arm(second)

    def _arm(self, second: int) -> None:
        """Give what is held back when ``second`` ends by the limiter's clock."""
        delay = max(0.0, second + 1 - self._clock()) + TIMER_SLACK
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire, second)

    def _expire(self, second: int) -> None:
        self._timer = None
        if self.second != second:  # a request of a later second has rolled them already
            return
        if self._clock() < second + 1:  # the clock is not there yet (a test's clock)
            self._arm(second)
        else:
            self._roll(second + 1)

    def _roll(self, second: int) -> None:
        """A new second: what the old one's leases did not hand out goes back."""
        old, old_second = self.held, self.second
        self.held, self.second = {}, second
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._give_back(old_second, [(name, h[0]) for name, h in old.items()])

    async def close(self) -> None:
        """Give back everything held, before the counters close (the app's shutdown): what
        is held now, then what trips still under way bring (their second is over)."""
        self._roll(self.second + 1)
        while self._refills or self._trips or self._returns:
            await asyncio.gather(*self._refills, *self._trips, *self._returns,
                                 return_exceptions=True)

    def _give_back(self, second: int, units: list[tuple[str, int]]) -> None:
        units = [(name, n) for name, n in units if n > 0]
        if not units:
            return
        counters = self._counters

        async def give_back() -> None:
            await asyncio.gather(*(counters.window_add(name, second, -n) for name, n in units))

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
