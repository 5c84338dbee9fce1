"""The model thread's hand-off to the event loop (``providers/local/worker.Job``): text that
arrives while the loop is busy or pacing goes in one batch; the first piece and the end
never wait for the pace; an error comes after the text before it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from modelmart.providers.local.worker import Job


def _producer(job: Job, pieces: int, every_s: float, end, started: list) -> threading.Thread:
    def run():
        started.append(time.perf_counter())
        for i in range(pieces):
            job.send(f"t{i} ")
            time.sleep(every_s)
        job.send(end)
    return threading.Thread(target=run, daemon=True)


async def _collect(job: Job) -> tuple[list[tuple[float, list]], BaseException | None]:
    got, error = [], None
    try:
        async for batch in job.batches():
            got.append((time.perf_counter(), batch))
    except Exception as exc:  # what the work raised
        error = exc
    return got, error


async def test_paced_text_leaves_in_few_batches_and_nothing_is_lost():
    job = Job(lambda j: None, pace=0.05)
    started: list = []
    thread = _producer(job, 100, 0.002, {"finish": "stop"}, started)
    thread.start()
    got, error = await _collect(job)
    thread.join()
    items = [item for _, batch in got for item in batch]
    assert error is None
    assert items == [f"t{i} " for i in range(100)] + [{"finish": "stop"}]
    # ~0.2 s of tokens, a batch at most every 50 ms: a handful, not 100
    assert len(got) <= 10
    # the first piece did not wait out the pace
    assert got[0][0] - started[0] < 0.04


async def test_the_end_does_not_wait_out_the_pace():
    job = Job(lambda j: None, pace=5.0)  # a pace far longer than the whole answer
    started: list = []
    thread = _producer(job, 3, 0.01, {"finish": "stop"}, started)
    thread.start()
    t0 = time.perf_counter()
    got, _ = await asyncio.wait_for(_collect(job), 2)
    thread.join()
    assert time.perf_counter() - t0 < 1.0
    assert [i for _, b in got for i in b][-1] == {"finish": "stop"}


@pytest.mark.parametrize("pace", [0.0, 0.05])
async def test_an_error_comes_after_the_text_before_it(pace):
    from modelmart.providers.local.worker import Failed

    job = Job(lambda j: None, pace=pace)
    started: list = []
    thread = _producer(job, 5, 0.001, Failed(RuntimeError("boom")), started)
    thread.start()
    got, error = await asyncio.wait_for(_collect(job), 2)
    thread.join()
    assert [i for _, b in got for i in b] == [f"t{i} " for i in range(5)]
    assert isinstance(error, RuntimeError) and str(error) == "boom"


async def test_without_a_pace_every_wait_is_woken_by_the_next_piece():
    job = Job(lambda j: None, pace=0.0)
    started: list = []
    thread = _producer(job, 20, 0.01, {"finish": "stop"}, started)
    thread.start()
    got, _ = await asyncio.wait_for(_collect(job), 5)
    thread.join()
    # pieces 10 ms apart, the loop idle: each goes as it comes
    assert len(got) >= 15
