"""The batch tables (store/batches.py) on SQLite and PostgreSQL: files with their bytes,
batches stored in chunks and made runnable only once whole, per-request compare-and-set
(a runner that lost a row cannot write it), leases, counts and exact price sums."""

from __future__ import annotations

import time

from modelmart.store.batches import (
    CANCELED, ERRORED, SUCCEEDED, BatchRecord, BatchTables, FileRecord,
)


def _batch(batch_id: str, total: int, **kw) -> BatchRecord:
    now = time.time()
    return BatchRecord(id=batch_id, kind="openai", endpoint="/v1/chat/completions",
                       customer_id=kw.pop("customer_id", 1), key_id=7, input_file_id=None,
                       status="validating", total=total, created_at=now,
                       expires_at=now + 86400, **kw)


async def test_files_keep_their_bytes_and_owner(store):
    tables = BatchTables(store)
    data = bytes(range(256)) * 1000  # not UTF-8: stored as it came
    f = FileRecord("file-1", 1, 7, "batch", "in.jsonl", len(data), time.time())
    await tables.insert_file(f, data)
    assert await tables.get_file("file-1") == f
    assert await tables.file_content("file-1") == data
    await tables.insert_file(FileRecord("file-2", 2, 8, "batch", "b", 0, time.time()), b"")
    assert [x.id for x in await tables.list_files(1, None, None, 10)] == ["file-1"]
    assert [x.id for x in await tables.list_files(2, "batch", None, 10)] == ["file-2"]
    assert await tables.list_files(None, None, None, 10) == []
    assert await tables.delete_file("file-1") and await tables.get_file("file-1") is None


async def test_a_batch_is_runnable_once_all_its_requests_are_stored(store):
    tables = BatchTables(store)
    requests = [(i, f"c{i}", '{"model": "m", "n": %d}' % i) for i in range(1234)]
    await tables.create_batch(_batch("batch_a", len(requests)), requests)
    batch = await tables.get_batch("batch_a")
    assert batch.status == "in_progress" and batch.started_at
    rows = await tables.unfinished("batch_a", -1, 2000)
    assert [(r.idx, r.custom_id, r.body) for r in rows] == requests
    assert [b.id for b in await tables.active()] == ["batch_a"]
    # A batch cut off while its rows were stored is failed after a while, never run.
    await store._execute("INSERT INTO batches (id, kind, endpoint, status, total, created_at, "
                         "expires_at) VALUES ('batch_cut', 'openai', '/v1/x', 'validating', 5, "
                         "?, ?)", (time.time() - 3600, time.time()))
    assert await tables.fail_stale(time.time() - 600) == 1
    cut = await tables.get_batch("batch_cut")
    assert cut.status == "failed" and "interrupted" in cut.errors


async def test_rows_move_by_compare_and_set(store):
    tables = BatchTables(store)
    await tables.create_batch(_batch("batch_b", 3), [(i, f"c{i}", "{}") for i in range(3)])
    first, second, third = await tables.unfinished("batch_b", -1, 10)
    assert await tables.start("batch_b", first, "rid-1")
    stale = await tables.unfinished("batch_b", -1, 1)
    stale[0].request_id = None  # a runner that read the row before it started
    assert not await tables.start("batch_b", stale[0], "rid-other")
    assert await tables.start("batch_b", first, "rid-2")  # its own retry under a new id
    assert not await tables.finish("batch_b", stale[0], 200, "{}", SUCCEEDED, 5)
    assert await tables.finish("batch_b", first, 200, '{"ok": 1}', SUCCEEDED, 2**62)
    assert await tables.start("batch_b", second, "rid-3")
    assert await tables.finish("batch_b", second, 400, '{"error": {}}', ERRORED, 2**62)
    assert not await tables.start("batch_b", first, "rid-4")  # done stays done
    counts = (await tables.counts(["batch_b"]))["batch_b"]
    assert (counts[SUCCEEDED], counts[ERRORED], counts["pending"], counts["price_pico"]) == (
        1, 1, 1, 2**63)  # exact past the 64-bit integers
    assert await tables.close_unfinished("batch_b", CANCELED) == 1
    done = await tables.results("batch_b", -1, 10)
    assert [(r.idx, r.outcome, r.request_id) for r in done] == [
        (0, SUCCEEDED, "rid-2"), (1, ERRORED, "rid-3"), (2, CANCELED, None)]


async def test_leases(store):
    tables = BatchTables(store)
    await tables.create_batch(_batch("batch_c", 1), [(0, "x", "{}")])
    now = time.time()
    assert await tables.claim("batch_c", None, "host/1/a", now + 30)
    assert not await tables.claim("batch_c", None, "host/2/b", now + 30)  # seen holder stale
    assert await tables.renew("batch_c", "host/1/a", now + 60) == "in_progress"
    assert await tables.renew("batch_c", "host/2/b", now + 60) is None
    assert await tables.claim("batch_c", "host/1/a", "host/2/b", now + 30)  # taken over
    assert await tables.renew("batch_c", "host/1/a", now + 60) is None  # the old one lost it
    assert await tables.set_status("batch_c", "cancelling", only_from=("in_progress",),
                                   cancel_requested_at=now)
    assert await tables.renew("batch_c", "host/2/b", now + 60) == "cancelling"
    await tables.release("batch_c", "host/2/b")
    assert (await tables.get_batch("batch_c")).runner is None
    assert await tables.set_status("batch_c", "cancelled", only_from=("cancelling",),
                                   ended_at=now)
    assert not await tables.claim("batch_c", None, "host/3/c", now + 30)  # ended: not runnable


async def test_lists_newest_first_by_owner(store):
    tables = BatchTables(store)
    for i in range(5):
        await tables.create_batch(_batch(f"batch_{i}", 0, customer_id=1 if i % 2 else 2), [])
    mine = await tables.list_batches(customer_id=2, limit=10)
    assert [b.id for b in mine] == ["batch_4", "batch_2", "batch_0"]
    assert [b.id for b in await tables.list_batches(customer_id=2, after="batch_4",
                                                    limit=1)] == ["batch_2"]
    assert [b.id for b in await tables.list_batches(customer_id=2, before="batch_0",
                                                    limit=1)] == ["batch_2"]
    assert len(await tables.list_batches(any_customer=True, limit=10)) == 5


async def test_retention_finds_and_deletes_what_is_old(store):
    tables = BatchTables(store)
    await tables.create_batch(_batch("batch_old", 1), [(0, "x", "{}")])
    await tables.set_status("batch_old", "completed", only_from=("in_progress",),
                            ended_at=time.time() - 40 * 86400)
    await tables.insert_file(FileRecord("file-old", 1, 7, "batch", "a", 1,
                                        time.time() - 40 * 86400), b"x")
    await tables.insert_file(FileRecord("file-old-output", 1, 7, "batch_output", "o", 1,
                                        time.time() - 40 * 86400, batch_id="batch_old",
                                        role="output"), None)
    await tables.create_batch(_batch("batch_new", 1), [(0, "y", "{}")])
    cutoff = time.time() - 30 * 86400
    assert await tables.expired(cutoff) == (["batch_old"], ["file-old"])
    await tables.delete_batch("batch_old")
    await tables.delete_file("file-old")
    assert await tables.expired(cutoff) == ([], [])
    assert await tables.get_batch("batch_old") is None
    assert await tables.get_file("file-old-output") is None
    assert await tables.results("batch_old", -1, 10) == []
    assert (await tables.get_batch("batch_new")).status == "in_progress"
