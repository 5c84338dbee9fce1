"""In-process scripted providers, a fake clock and a router over them: routing logic tested
without sockets (the end-to-end tests use real fakes over HTTP)."""

from __future__ import annotations

import random
from typing import AsyncIterator

from modelmart.catalog.loader import parse_catalog
from modelmart.core.errors import GatewayError
from modelmart.core.types import (
    BlockStart, BlockStop, Message, MessageEnd, MessageStart, Request, Response, TextBlock,
    TextDelta, Usage,
)
from modelmart.providers.base import Provider
from modelmart.routing import Router


class FakeClock:
    """Time that moves only when the router sleeps or a provider is 'slow'."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Slow:
    """A scripted step: answer, but only after ``seconds`` of fake time."""

    def __init__(self, seconds: float, text: str = "slow") -> None:
        self.seconds, self.text = seconds, text


class Scripted(Provider):
    """Answers from a script: a ``GatewayError`` is raised, ``Slow`` advances the clock, a
    string is the reply text; an empty script answers ``"ok from <name>"``."""

    kind = "openai"

    def __init__(self, name: str, clock: FakeClock) -> None:
        super().__init__(config=None, http=None)  # type: ignore[arg-type]
        self.name, self.clock = name, clock
        self.script: list = []
        self.calls = 0
        # Raised by the next stream after its first events (the client already has bytes).
        self.mid_stream_error: GatewayError | None = None
        self.closed = 0  # streams whose generator was closed (the upstream hung up on)

    def _next(self) -> str:
        self.calls += 1
        step = self.script.pop(0) if self.script else f"ok from {self.name}"
        if isinstance(step, GatewayError):
            raise step
        if isinstance(step, Slow):
            self.clock.now += step.seconds
            return step.text
        return step

    async def complete(self, request: Request) -> Response:
        text = self._next()
        return Response(id="r", model="m", content=[TextBlock(text)], usage=Usage(3, 2))

    async def stream(self, request: Request) -> AsyncIterator:
        try:
            text = self._next()
            yield MessageStart("r", "m")
            yield BlockStart(0, TextBlock(""))
            if self.mid_stream_error is not None:
                err, self.mid_stream_error = self.mid_stream_error, None
                raise err
            yield TextDelta(0, text)
            yield BlockStop(0)
            yield MessageEnd("end_turn", Usage(3, 2))
        finally:
            self.closed += 1


def deployment(name: str, **extra) -> dict:
    return {"provider": "openai-compatible", "base_url": "http://upstream.invalid/v1",
            "name": name, **extra}


def make_router(model: dict, *, cost_of=None, seed: int = 7) -> tuple[Router, dict[str, Scripted], FakeClock]:
    """A router for one model ``m`` (a catalog entry dict) over scripted providers."""
    catalog = parse_catalog({"bundled_model": False, "models": {"m": model}})
    clock = FakeClock()
    providers = {d.name: Scripted(d.name, clock) for d in catalog.deployments()}
    router = Router(catalog, providers, cost_of=cost_of, clock=clock, sleep=clock.sleep,
                    rng=random.Random(seed))
    return router, providers, clock


def request(text: str = "hello", **fields) -> Request:
    fields.setdefault("messages", [Message("user", [TextBlock(text)])])
    return Request(model="m", **fields)
