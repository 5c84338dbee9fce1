"""The durable recorder: batching, a dead database, crashes (simulated and real kill -9)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import modelmart
from modelmart.metering import journal
from modelmart.metering.recorder import Recorder
from tests.metering.conftest import FlakyStore, usage_record

SRC = str(Path(modelmart.__file__).resolve().parents[1])


def segments(directory) -> list[Path]:
    return sorted(Path(directory).glob(f"*{journal.SUFFIX}"))


async def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def ids_in(store, ids) -> set[str]:
    return {i for i in ids if await store.get_usage(i) is not None}


async def test_records_are_flushed_in_batches_and_the_journal_emptied(store, tmp_path):
    flaky = FlakyStore(store)
    rec = Recorder(flaky, str(tmp_path / "j"), batch_size=4, flush_interval=0.02)
    await rec.start()
    for i in range(10):
        rec.record(usage_record(f"r{i}", price_pico=i))
    assert rec.pending() == 10
    await eventually(lambda: rec.pending() == 0)
    assert await store.count_usage() == 10
    assert max(flaky.batches) <= 4
    assert (await store.get_usage("r7")).price_pico == 7
    # Caught up: the live segment is emptied in place, not left to grow.
    assert [p.stat().st_size for p in segments(tmp_path / "j")] == [0]
    await rec.close()
    assert segments(tmp_path / "j") == []


async def test_dead_database_then_replay_by_a_new_recorder_exactly_once(store, tmp_path):
    jdir = str(tmp_path / "j")
    dead = FlakyStore(store, down=True)
    first = Recorder(dead, jdir, flush_interval=0.01, max_backoff=0.02)
    await first.start()
    for i in range(20):
        first.record(usage_record(f"r{i}"))
    await eventually(lambda: dead.failures >= 2)
    await first.close(timeout=0.1)  # cannot flush: the records stay in the journal
    assert await store.count_usage() == 0
    saved = segments(jdir)
    assert len(saved) == 1
    backup = tmp_path / "backup"
    shutil.copy(saved[0], backup)

    second = Recorder(store, jdir)
    assert await second.start() == 20
    assert await store.count_usage() == 20 and segments(jdir) == []
    await second.close()

    shutil.copy(backup, saved[0])  # the same segment turns up again: no duplicates
    third = Recorder(store, jdir)
    assert await third.start() == 0
    assert await store.count_usage() == 20
    await third.close()


async def test_writer_retries_until_the_database_is_back(store, tmp_path):
    flaky = FlakyStore(store, down=True)
    rec = Recorder(flaky, str(tmp_path / "j"), flush_interval=0.01, max_backoff=0.02)
    await rec.start()
    for i in range(5):
        rec.record(usage_record(f"r{i}"))
    await eventually(lambda: flaky.failures >= 3)
    assert rec.pending() == 5
    flaky.down = False
    await eventually(lambda: rec.pending() == 0)
    assert await store.count_usage() == 5
    await rec.close()


async def test_torn_last_line_and_corrupt_lines_are_skipped(store, tmp_path):
    jdir = tmp_path / "j"
    jdir.mkdir()
    good = [journal.encode(usage_record(f"r{i}")) for i in range(3)]
    torn = journal.encode(usage_record("r-torn"))[:40]  # killed mid-write: no newline
    (jdir / f"dead-1{journal.SUFFIX}").write_bytes(
        good[0] + b"{not json\n" + b"[1, 2]\n" + good[1] + good[2] + torn)
    rec = Recorder(store, str(jdir))
    assert await rec.start() == 3
    assert await store.get_usage("r-torn") is None
    assert segments(jdir) == []
    await rec.close()


async def test_two_recorders_in_one_dir_do_not_take_each_others_live_segment(store, tmp_path):
    jdir = str(tmp_path / "j")
    a = Recorder(store, jdir)  # records, writer not started yet
    for i in range(5):
        a.record(usage_record(f"a{i}"))
    b = Recorder(store, jdir, flush_interval=0.01)
    assert await b.start() == 0  # a's segment is locked by a live owner
    assert await store.count_usage() == 0 and len(segments(jdir)) == 1
    b.record(usage_record("b0"))
    await eventually(lambda: b.pending() == 0)
    assert await ids_in(store, ["a0", "b0"]) == {"b0"}
    await a.close()  # a flushes its own records
    assert await store.count_usage() == 6
    await b.close()
    assert segments(jdir) == []


async def test_a_live_recorder_sweeps_up_segments_of_a_worker_that_died(store, tmp_path):
    jdir = str(tmp_path / "j")
    survivor = Recorder(store, jdir, flush_interval=0.01, orphan_sweep_interval=0.05)
    await survivor.start()
    dead = Recorder(FlakyStore(store, down=True), jdir, flush_interval=0.01, max_backoff=0.02)
    for i in range(7):
        dead.record(usage_record(f"d{i}"))
    await dead.close(timeout=0.05)  # gone with its records unflushed, lock released
    await eventually(lambda: not segments(jdir))
    assert await store.count_usage() == 7
    await survivor.close()


async def test_segments_rotate_by_size_and_are_deleted_once_stored(store, tmp_path):
    jdir = str(tmp_path / "j")
    flaky = FlakyStore(store, down=True)
    rec = Recorder(flaky, jdir, flush_interval=0.01, max_backoff=0.02,
                   max_segment_bytes=2000)
    await rec.start()
    for i in range(30):
        rec.record(usage_record(f"r{i}"))
    assert len(segments(jdir)) > 3
    flaky.down = False
    await eventually(lambda: rec.pending() == 0)
    assert await store.count_usage() == 30
    assert [p.stat().st_size for p in segments(jdir)] == [0]  # only the live one, emptied
    await rec.close()
    assert segments(jdir) == []


def run_child(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.getcwd()])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, **kw)


CHILD_HEADER = """
    import os, signal, sys, time
    from modelmart.metering.recorder import Recorder
    from modelmart.store.records import UsageRecord
    rec = Recorder(None, sys.argv[1])
    def record(i):
        rec.record(UsageRecord(request_id=f"k{i}", created_at=time.time(), customer_id=1,
                               key_id=2, model="gpt", deployment="gpt/openai-0",
                               provider="openai", surface="openai", stream=False,
                               status="ok", input_tokens=i, price_pico=10 * i))
"""


async def test_real_kill_9_right_after_record_returns(store, tmp_path):
    jdir = str(tmp_path / "j")
    child = run_child(CHILD_HEADER + """
    for i in range(250):
        record(i)
    os.kill(os.getpid(), signal.SIGKILL)
    """, jdir)
    assert child.wait(timeout=60) == -signal.SIGKILL
    rec = Recorder(store, jdir)
    assert await rec.start() == 250
    assert await store.count_usage() == 250
    row = await store.get_usage("k249")
    assert (row.input_tokens, row.price_pico, row.customer_id) == (249, 2490, 1)
    await rec.close()
    assert segments(jdir) == []


async def test_kill_9_at_an_arbitrary_moment_loses_no_acknowledged_record(store, tmp_path):
    """The child prints an id only after record() returned (as the API answers only then);
    every printed id must survive a SIGKILL landing anywhere, even mid-write."""
    jdir = str(tmp_path / "j")
    child = run_child(CHILD_HEADER + """
    i = 0
    while True:
        record(i)
        sys.stdout.write(f"k{i}\\n"); sys.stdout.flush()
        i += 1
    """, jdir)
    acknowledged = [child.stdout.readline().decode().strip() for _ in range(2000)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    child.stdout.close()
    rec = Recorder(store, jdir)
    added = await rec.start()
    assert added >= 2000
    assert await ids_in(store, acknowledged) == set(acknowledged)
    await rec.close()


async def test_a_recorder_that_never_started_is_replayed_after_its_process_exits(store, tmp_path):
    jdir = str(tmp_path / "j")
    child = run_child(CHILD_HEADER + """
    for i in range(3):
        record(i)
    os._exit(0)  # no close(), no flush: the writer never ran
    """, jdir)
    assert child.wait(timeout=60) == 0
    rec = Recorder(store, jdir)
    assert await rec.start() == 3
    await rec.close()
