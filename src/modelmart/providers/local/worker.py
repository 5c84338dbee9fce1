"""The one thread that owns the model, and the bounded line of requests waiting for it.

llama.cpp contexts must not be used from two threads at once, and a small model on a few
cores answers fastest one request at a time, so every model call runs on a single dedicated
thread. Requests beyond ``queue_size`` waiting are refused at once instead of piling up.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from modelmart.core.errors import GatewayError, InternalError, Overloaded


@dataclass(slots=True)
class Failed:
    error: BaseException


class Job:
    """One request's generation. The model thread sends items (text pieces, then a final
    result or ``Failed``); the event loop takes whatever has arrived as one batch.

    The loop is woken only when it waits for an item: each wake-up is a write to the
    loop's self-pipe and a context switch, which on a small machine take the CPU from the
    inference threads (llama.cpp's threads wait for one another at every step, so one
    preempted thread stalls them all). With ``pace`` (seconds), text that arrives within
    ``pace`` of the last batch waits for the next one, so a fast model's tokens leave a
    few at a time; the first token, and the end, never wait."""

    def __init__(self, work: Callable[["Job"], Any], pace: float = 0.0) -> None:
        self.work = work
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._waiter: asyncio.Future | None = None  # set while the loop waits
        self._pacing = False  # the loop waits out ``pace``: only an end wakes it
        self._pace = pace

    def send(self, item: Any) -> None:
        """Called from the model thread."""
        with self._lock:
            self._items.append(item)
            waiter = self._waiter
            if waiter is None or (self._pacing and type(item) is str):
                return
            self._waiter = None
        try:
            self._loop.call_soon_threadsafe(_wake, waiter)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel.set()

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Lists of the items that arrived together: text pieces, the last list ending with
        the final result; raises what the work raised, after the text before it."""
        loop = self._loop
        while True:
            with self._lock:
                items, self._items = self._items, []
                if not items:
                    self._waiter = waiter = loop.create_future()
                    self._pacing = False
            if not items:
                await waiter
                continue
            last = items[-1]
            if type(last) is Failed:
                if len(items) > 1:
                    yield items[:-1]
                raise last.error
            yield items
            if type(last) is not str:
                return
            if self._pace:
                await self._wait_pace(loop)

    async def _wait_pace(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._items and type(self._items[-1]) is not str:
                return  # the end is here already
            self._waiter = waiter = loop.create_future()
            self._pacing = True
        timer = loop.call_later(self._pace, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            with self._lock:
                self._waiter, self._pacing = None, False

    async def items(self) -> AsyncIterator[Any]:
        """Item by item: text pieces, then the final result."""
        async for batch in self.batches():
            for item in batch:
                yield item


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ModelThread:
    def __init__(self, queue_size: int) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelmart-local")
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._waiting = 0
        self._jobs: set[Job] = set()
        self._closed = False

    @property
    def waiting(self) -> int:
        return self._waiting

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs ``fn`` on the model thread (after the jobs already queued) and awaits it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def submit(self, job: Job) -> None:
        """Queues ``job`` or raises ``Overloaded`` when ``queue_size`` jobs already wait."""
        with self._lock:
            if self._closed:
                raise Overloaded("local model is shutting down", retry_after=1)
            if self._waiting >= self._queue_size:
                raise Overloaded(
                    f"local model is busy: {self._waiting} requests queued; retry shortly",
                    status=503,
                    retry_after=1,
                )
            self._waiting += 1
            self._jobs.add(job)
        self._executor.submit(self._run, job)

    def _run(self, job: Job) -> None:
        with self._lock:
            self._waiting -= 1
        try:
            if not job.cancel.is_set():  # its client left while it waited
                job.send(job.work(job))
        except GatewayError as err:
            job.send(Failed(err))
        except Exception as err:  # a llama.cpp failure must reach the caller, not the log
            job.send(Failed(InternalError(f"local model failed: {err}")))
        finally:
            with self._lock:
                self._jobs.discard(job)

    async def shutdown(self, last: Callable[[], Any]) -> None:
        """Cancels every job, runs ``last`` (freeing the model) on the thread, and stops it."""
        with self._lock:
            jobs, self._closed = list(self._jobs), True
        for job in jobs:
            job.cancel.set()
            job.send(Failed(Overloaded("local model is shutting down", retry_after=1)))
        await self.call(last)
        self._executor.shutdown(wait=False)
