"""The ledger writer process: workers' recorders hand it their batches; when it is gone they
insert themselves, and nothing is lost or doubled either way."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from modelmart.metering import journal
from modelmart.metering.recorder import Recorder
from modelmart.metering.writer import WriterClient, WriterError, WriterProcess, start_writer
from tests.metering.conftest import FlakyStore, usage_record
from tests.metering.test_recorder import eventually, ids_in


@pytest.fixture
def writer(tmp_path):
    proc = WriterProcess(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert proc.wait_ready(), "the ledger writer did not start"
    yield proc
    proc.stop()


async def test_recorder_hands_its_batches_to_the_writer(store, writer, tmp_path):
    # This process's own store is "down": every row that lands came through the writer.
    here = FlakyStore(store, down=True)
    rec = Recorder(here, str(tmp_path / "j"), batch_size=8, flush_interval=0.01,
                   writer=WriterClient(writer.socket_path))
    await rec.start()
    ids = [f"w{i}" for i in range(50)]
    for i, rid in enumerate(ids):
        rec.record(usage_record(rid, price_pico=i, extra={"usage_estimated": True}))
    await eventually(lambda: rec.pending() == 0)
    assert here.failures == 0 and await ids_in(store, ids) == set(ids)
    row = await store.get_usage("w7")
    assert row.price_pico == 7 and row.extra == {"usage_estimated": True} and row.stream is False
    await rec.close()


async def test_without_the_writer_the_recorder_inserts_itself(store, writer, tmp_path):
    writer.stop()  # it was there at startup, then died
    rec = Recorder(store, str(tmp_path / "j"), flush_interval=0.01,
                   writer=WriterClient(writer.socket_path))
    await rec.start()
    rec.record(usage_record("alone"))
    await eventually(lambda: rec.pending() == 0)
    assert await store.get_usage("alone") is not None
    await rec.close()


async def test_writer_killed_mid_run_loses_nothing(store, writer, tmp_path):
    rec = Recorder(store, str(tmp_path / "j"), flush_interval=0.01,
                   writer=WriterClient(writer.socket_path))
    await rec.start()
    rec.record(usage_record("before"))
    await eventually(lambda: rec.pending() == 0)
    os.kill(writer.proc.pid, signal.SIGKILL)
    writer.proc.wait()
    rec.record(usage_record("after"))
    await eventually(lambda: rec.pending() == 0)
    assert await ids_in(store, ["before", "after"]) == {"before", "after"}
    await rec.close()


async def test_a_refused_batch_is_an_error_and_the_connection_stays_usable(store, writer):
    client = WriterClient(writer.socket_path)
    with pytest.raises(WriterError, match="line 1 column 1"):
        await client.insert_lines([b"not json\n"])
    line = journal.encode(usage_record("ok-after"))
    assert await client.insert_lines([line]) == 1
    assert await client.insert_lines([line]) == 0  # idempotent by request id
    await client.close()
    assert await store.get_usage("ok-after") is not None


def test_stop_ends_the_process_and_removes_its_socket(tmp_path):
    proc = WriterProcess(f"sqlite:///{tmp_path / 'x.db'}")
    assert proc.wait_ready()
    proc.stop()
    assert proc.proc.returncode == 0 and not os.path.exists(proc.socket_path)


def test_no_writer_for_postgres():
    assert start_writer("postgresql://nobody@127.0.0.1:1/none") is None


async def test_the_writer_leaves_when_its_parent_is_killed(tmp_path):
    # A parent that starts a writer and then dies by SIGKILL: the orphan must not linger.
    script = (
        "import sys, time\n"
        "from modelmart.metering.writer import WriterProcess\n"
        f"w = WriterProcess('sqlite:///{tmp_path / 'y.db'}')\n"
        "assert w.wait_ready()\n"
        "print(w.proc.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = await asyncio.create_subprocess_exec(
        "python", "-c", script, stdout=asyncio.subprocess.PIPE)
    pid = int((await asyncio.wait_for(parent.stdout.readline(), 30)).decode())
    parent.kill()
    await parent.wait()

    def alive() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for init counts as gone
                return f.read().split(")")[-1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    await eventually(lambda: not alive(), timeout=10)
