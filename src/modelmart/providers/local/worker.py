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
    result or ``Failed``) to the event loop through an asyncio queue."""

    def __init__(self, work: Callable[["Job"], Any]) -> None:
        self.work = work
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[Any] = asyncio.Queue()

    def send(self, item: Any) -> None:
        """Called from the model thread."""
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel.set()

    async def items(self) -> AsyncIterator[Any]:
        """Text pieces, then the final result; raises what the work raised."""
        while True:
            item = await self._items.get()
            if isinstance(item, Failed):
                raise item.error
            yield item
            if not isinstance(item, str):
                return


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
