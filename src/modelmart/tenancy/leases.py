"""Rate-limit leases: how a worker of ``serve --workers`` admits most requests without a
round trip to the coordinator that holds the counters (``limits.RateLimiter`` uses them
when its counters offer ``lease_all``).

A round trip to the
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
the rest of that minute. The ``x-ratelimit-remaining`` headers of a request admitted from
a lease are this worker's view (the count when it last asked, plus what it handed out
since).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

LEASE = 32  # a lease: up to this many times what the request needs, at first
MAX_LEASE = 1024  # ... and at most, for a worker with that many requests at once


class Leases:
    """One worker's leases of the current minute's counters."""

    def __init__(self, counters, window_seconds: float, ttl: float) -> None:
        self._counters = counters
        self._minute, self._ttl = window_seconds, ttl  # the limits' window and counter TTL
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
            self._ends_at = loop.time() + self._minute - elapsed
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
        trip = asyncio.ensure_future(self._counters.lease_all(asks, self._ttl))
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
            await asyncio.gather(*(counters.add(key, -n, self._ttl) for key, n in units))

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
