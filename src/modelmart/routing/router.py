"""The router: picks deployments for a model and makes the attempts.

For one request: the model's deployments that can serve it (tools, images, JSON schema,
context window) are ordered by the model's strategy, cooling ones are set aside, then each
is tried up to ``retries.attempts`` times — retrying connection errors, timeouts, 429 and 5xx
with backoff, never other 4xx — within ``retries.max_attempts`` and ``retries.deadline``
overall. An upstream 401/403 is the gateway's own key being refused: the next deployment is
tried at once. The error finally raised is the last upstream error.

For streams, fallback is possible only until the first event arrives: after that the client
has bytes and a failure is reported inside the stream.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from modelmart.catalog import Catalog, Deployment, ModelEntry
from modelmart.core.errors import (
    CONTEXT_LENGTH_EXCEEDED, GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout,
)
from modelmart.core.types import Request, Response, StreamEvent
from modelmart.providers.base import ATTEMPT_DEADLINE, Provider

from .capability import estimate_input_tokens, why_unable
from .health import HealthBoard
from .retry import credentials_failure, is_credentials_error, is_retryable, retry_delay
from .quality import QualityBoard
from .strategies import Context, CostFn, order

T = TypeVar("T")


@dataclass(slots=True)
class Routed:
    """Which deployment answered, after how many attempts, and how fast the client was served,
    counted from the start of routing (failed attempts included). ``ttft_ms`` is set for
    streams only; a stream's ``latency_ms`` is set when the stream ends."""

    deployment: Deployment
    attempts: int
    ttft_ms: float | None = None
    latency_ms: float | None = None
    # cheapest-within-gap models: the evaluation the choice rests on (x-modelmart-route-basis)
    basis: str | None = None
    # A stream's: ``finish(outcome)`` says how it ended (True: the upstream finished; a
    # GatewayError: it failed; False: closed early), once, for health and latency.
    _ended: Callable[[GatewayError | bool], None] | None = None

    def finish(self, outcome: "GatewayError | bool") -> None:
        ended, self._ended = self._ended, None
        if ended is not None:
            ended(outcome)


def _request_for(dep: Deployment, req: Request) -> Request:
    """Client-specific extra fields go only to an upstream of the client's own dialect, and
    only those its ``passthrough`` list allows (None: not filtered; the app resolves every
    deployment's list at startup)."""
    extra = req.extra
    if not extra:
        return req
    if dep.config.kind != req.source:
        return replace(req, extra={})
    allowed = dep.config.passthrough
    if allowed is not None and not allowed.issuperset(extra):
        return replace(req, extra={k: v for k, v in extra.items() if k in allowed})
    return req


class _Run:
    """The bookkeeping of one routed request: attempts made, time left, last failure."""

    def __init__(self, entry: ModelEntry, clock: Callable[[], float]) -> None:
        self.entry, self.clock = entry, clock
        self.started = clock()
        self.attempts = 0
        self.last: GatewayError | None = None
        self.last_dep: Deployment | None = None

    def remaining(self) -> float:
        return self.entry.retries.deadline - (self.clock() - self.started)

    def elapsed_ms(self) -> float:
        return (self.clock() - self.started) * 1000

    def may_attempt(self) -> bool:
        return self.attempts < self.entry.retries.max_attempts and self.remaining() > 0

    def final_error(self) -> GatewayError:
        assert self.last is not None and self.last_dep is not None
        err = self.last
        if is_credentials_error(err):
            err = credentials_failure(self.last_dep, err)
        return self.counted(err)

    def counted(self, err: GatewayError) -> GatewayError:
        """``err`` carrying the attempts made, for the ledger."""
        err.attempts = self.attempts  # type: ignore[attr-defined]
        return err


class Router:
    def __init__(
        self,
        catalog: Catalog,
        providers: dict[str, Provider],
        *,
        cost_of: CostFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.providers = providers
        self.cost_of = cost_of  # from metering; None: costs unknown, lowest-cost keeps order
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self.board = HealthBoard(clock)
        self.quality = QualityBoard()  # measured gaps, for cheapest-within-gap models

    # ---- planning ---------------------------------------------------------------------

    def candidates(self, entry: ModelEntry, req: Request,
                   input_tokens: int | None = None) -> list[Deployment]:
        """The deployments able to serve ``req``; an ``InvalidRequest`` naming what is
        missing when there are none."""
        if input_tokens is None:
            input_tokens = estimate_input_tokens(req)
        able, missing = [], []
        for dep in entry.deployments:
            why = why_unable(dep, req, input_tokens)
            if why is None:
                able.append(dep)
            elif why not in missing:
                missing.append(why)
        if not able:
            too_long = any("context window" in why for why in missing)
            raise InvalidRequest(
                f"The model '{entry.id}' does not support {', '.join(missing)}.", param="model",
                code=CONTEXT_LENGTH_EXCEEDED if too_long else None)
        return able

    def route_basis(self, entry: ModelEntry) -> str | None:
        """For a cheapest-within-gap model, the evaluation its choice rests on (the
        ``x-modelmart-route-basis`` header); None for other models."""
        return self.quality.basis(entry.gap_policy) if entry.gap_policy is not None else None

    def plan(self, entry: ModelEntry, req: Request) -> list[Deployment]:
        """The deployments to try, in order."""
        tokens = estimate_input_tokens(req)
        if len(entry.deployments) == 1:  # nothing to order, and the board admits a lone one
            return self.candidates(entry, req, tokens)
        ctx = Context(stream=req.stream, input_tokens=tokens,
                      output_tokens=req.max_tokens or entry.max_output_tokens,
                      board=self.board, rng=self.rng, cost_of=self.cost_of, entry=entry,
                      quality=self.quality)
        return self.board.admit(order(entry.strategy, self.candidates(entry, req, tokens), ctx))

    # ---- the public calls -------------------------------------------------------------

    async def complete(self, req: Request) -> tuple[Response, Routed]:
        async def once(dep: Deployment, run: _Run) -> Response:
            started = self.clock()
            provider = self.providers[dep.name]
            resp = await self._guard(dep, run, provider.complete(_request_for(dep, req)))
            self.board.succeeded(dep, latency_ms=(self.clock() - started) * 1000)
            return resp

        resp, dep, run = await self._route(req, once)
        return resp, Routed(dep, run.attempts, latency_ms=run.elapsed_ms(),
                            basis=None if run.entry.gap_policy is None
                            else self.route_basis(run.entry))

    async def stream(self, req: Request) -> tuple[AsyncIterator[StreamEvent], StreamEvent, Routed]:
        """``stream_batches`` event by event: the iterator, its first event and the route
        (its outcome reported as it ends)."""
        batches, first, routed = await self.stream_batches(req)
        return _Events(first[1:], _TrackedStream(batches, routed.finish)), first[0], routed

    async def stream_batches(self, req: Request) -> tuple[AsyncIterator[list[StreamEvent]],
                                                          list[StreamEvent], Routed]:
        """Open a stream and wait for its first events (so a failure before any byte reaches
        the client can still fall back). Returns the iterator of event batches (the events
        of one upstream read together), the first batch and the route. The caller reports
        how the stream ended with ``routed.finish(outcome)`` (``Router.stream`` does it for
        its caller); a wrapper layer on every batch would cost more."""
        async def once(dep: Deployment, run: _Run):
            started = self.clock()
            batches = self.providers[dep.name].stream_batches(_request_for(dep, req))
            try:
                first = await self._guard(dep, run, _first_batch(batches))
            except BaseException:
                await batches.aclose()  # type: ignore[attr-defined]
                raise
            self.board.first_event(dep, (self.clock() - started) * 1000)
            return batches, first, started

        (batches, first, started), dep, run = await self._route(req, once)
        routed = Routed(dep, run.attempts, ttft_ms=run.elapsed_ms(),
                        basis=None if run.entry.gap_policy is None
                        else self.route_basis(run.entry))

        def ended(outcome: GatewayError | bool) -> None:
            routed.latency_ms = run.elapsed_ms()
            if outcome is True:
                self.board.succeeded(dep, latency_ms=(self.clock() - started) * 1000)
            elif isinstance(outcome, GatewayError):
                self._record_failure(dep, run.entry, outcome)
            else:  # closed early (the client went away): says nothing about the upstream
                self.board.release(dep)

        routed._ended = ended
        return batches, first, routed

    def health(self) -> dict[str, dict]:
        """By deployment name: model, state (healthy, cooling, half_open,
        credentials_rejected), failures, moving-average latency and TTFT, last error,
        cooldown left."""
        return {dep.name: {"model": entry.id, **self.board.report(dep)}
                for entry in self.catalog.models.values() for dep in entry.deployments}

    # ---- attempts ---------------------------------------------------------------------

    async def _route(self, req: Request, once: Callable[[Deployment, _Run], Awaitable[T]]
                     ) -> tuple[T, Deployment, _Run]:
        entry = self.catalog.get(req.model)
        run = _Run(entry, self.clock)
        try:
            plan = self.plan(entry, req)
        except GatewayError as err:
            raise run.counted(err)
        for dep in plan:
            for n in range(1, entry.retries.attempts + 1):
                if not run.may_attempt():
                    raise run.final_error()
                run.attempts += 1
                try:
                    return await once(dep, run), dep, run
                except GatewayError as err:
                    run.last, run.last_dep = err, dep
                    if not await self._worth_retrying(dep, run, err, n):
                        break
        raise run.final_error()

    async def _worth_retrying(self, dep: Deployment, run: _Run, err: GatewayError, n: int) -> bool:
        """After failed attempt ``n`` on ``dep``: wait and return True to retry it, return
        False to move on to the next deployment; raise when the client must hear at once."""
        if is_credentials_error(err):
            return False
        if not is_retryable(err):
            raise run.counted(err)
        if n >= run.entry.retries.attempts:
            return False
        delay = retry_delay(run.entry.retries, err, n, run.remaining(), self.rng)
        if delay is None:
            return False
        await self.sleep(delay)
        return True

    async def _guard(self, dep: Deployment, run: _Run, call: Awaitable[T]) -> T:
        """Await one attempt within the deadline and record its failure in the health board."""
        self.board.begin(dep)
        scope = None
        token = ATTEMPT_DEADLINE.set(time.monotonic() + run.remaining())
        try:
            if self.providers[dep.name].honours_deadline:
                return await call
            async with asyncio.timeout(run.remaining()) as scope:
                return await call
        except TimeoutError:
            if scope is None or not scope.expired():
                raise
            err = self._past_deadline(dep, run)
            self._record_failure(dep, run.entry, err)
            raise err from None
        except GatewayError as err:
            if getattr(err, "route_deadline", False):
                err = self._past_deadline(dep, run)
            self._record_failure(dep, run.entry, err)
            raise err from None
        except BaseException:
            self.board.release(dep)
            raise
        finally:
            ATTEMPT_DEADLINE.reset(token)

    @staticmethod
    def _past_deadline(dep: Deployment, run: "_Run") -> UpstreamTimeout:
        return UpstreamTimeout(f"no answer from deployment '{dep.name}' before the routing "
                               f"deadline of {run.entry.retries.deadline:g}s")

    def _record_failure(self, dep: Deployment, entry: ModelEntry, err: GatewayError) -> None:
        if is_credentials_error(err):
            self.board.rejected(dep, err, entry.cooldown)
        elif is_retryable(err):
            self.board.failed(dep, err, entry.cooldown)
        else:
            # A 4xx about the request itself: the upstream is up and answering.
            self.board.succeeded(dep)


class _TrackedStream:
    """The provider's stream, passed through; how it ends is the attempt's outcome for health
    and latency. A class, not an async generator, so that ``aclose()`` closes the upstream
    even when the stream was never iterated (a generator that never started would skip its
    ``finally``)."""

    def __init__(self, events: AsyncIterator[StreamEvent],
                 ended: Callable[[GatewayError | bool], None]) -> None:
        self._events, self._ended, self._done = events, ended, False

    def __aiter__(self) -> "_TrackedStream":
        return self

    async def __anext__(self):
        try:
            return await self._events.__anext__()
        except StopAsyncIteration:
            self._finish(True)
            raise
        except GatewayError as err:
            self._finish(err)
            raise

    async def aclose(self) -> None:
        self._finish(False)
        await self._events.aclose()  # type: ignore[attr-defined]

    def _finish(self, outcome: GatewayError | bool) -> None:
        if not self._done:
            self._done = True
            self._ended(outcome)


async def _first_batch(batches: AsyncIterator[list[StreamEvent]]) -> list[StreamEvent]:
    try:
        return await batches.__anext__()
    except StopAsyncIteration:
        raise UpstreamError("upstream stream ended before its first event") from None


class _Events:
    """Batches event by event, after ``head``. A class for the same reason as
    ``_TrackedStream``: ``aclose()`` must close the upstream even if never iterated."""

    def __init__(self, head: list[StreamEvent], batches) -> None:
        self._pending, self._batches = list(head), batches

    def __aiter__(self) -> "_Events":
        return self

    async def __anext__(self) -> StreamEvent:
        while not self._pending:
            self._pending = list(await self._batches.__anext__())
        return self._pending.pop(0)

    async def aclose(self) -> None:
        await self._batches.aclose()
