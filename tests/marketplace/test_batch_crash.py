"""Issue #16: a batch of 1,000 requests over a fake upstream; `modelmart serve` is killed
with SIGKILL halfway — while the database is locked, so the answers in flight are billed
(journaled) but not stored — and started again: the batch resumes where it stopped, every
request is answered exactly once, the output file is complete, and the ledger holds one row
per request at the batch rate."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Reply
from tests.marketplace.helpers import (
    M, UPSTREAM_KEY, ServeProcess, all_usage, cli, cli_key, poll, write_config,
)

REQUESTS = 1000
CONCURRENCY = 8
COST = 11 * 1 * M + 7 * 2 * M  # the fake's 11 tokens in and 7 out at 1.00 / 2.00 per M
PRICE = (11 * 3 * M + 7 * 6 * M) // 2  # at 3.00 / 6.00 per M, less the batch discount of 50%
assert (COST, PRICE) == (25_000_000, 37_500_000)


class SlowFake(FakeOpenAI):
    """Echoes each request after a short wait, so that the batch takes a few seconds."""

    def next_reply(self, last_user_text: str) -> Reply:
        return Reply(text=f"echo: {last_user_text}", delay=0.02)


def _journal_ids(folder: Path) -> set[str]:
    ids = set()
    for path in folder.glob("*.usage.jsonl"):
        for line in path.read_bytes().split(b"\n"):
            try:
                ids.add(json.loads(line)["request_id"])
            except ValueError:
                pass
    return ids


def _input_file() -> bytes:
    return "\n".join(json.dumps({
        "custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "batchy", "messages": [{"role": "user", "content": f"question {i}"}]},
    }) for i in range(REQUESTS)).encode()


def test_a_batch_killed_halfway_resumes_and_answers_each_request_once(tmp_path):
    fake = SlowFake(api_key=UPSTREAM_KEY).start()
    config = write_config(tmp_path, {"bundled_model": False, "models": {"batchy": {
        "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake.base_url}/v1",
        "api_key": UPSTREAM_KEY,
        "cost": {"input": "1.00", "output": "2.00", "cache_read": "0.50", "cache_write": "1.00"},
        "price": {"input": "3.00", "output": "6.00", "cache_read": "1.50", "cache_write": "3.00"},
    }}})
    db_path = tmp_path / "batches.db"
    db = f"sqlite:///{db_path}"
    journal = tmp_path / "journal"
    env = {"MODELMART_BATCH_CONCURRENCY": str(CONCURRENCY)}
    cli("customers", "create", "batchco", "--database", db)
    key = cli_key(db, "batchco")
    server = ServeProcess(tmp_path, config, db, journal_dir=journal, env=env).wait_ready()
    restarted = None
    try:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=key["secret"], max_retries=0)
        upload = client.files.create(file=("questions.jsonl", io.BytesIO(_input_file())),
                                     purpose="batch")
        batch = client.batches.create(input_file_id=upload.id,
                                      endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.request_counts.total == REQUESTS

        def halfway():
            counts = client.batches.retrieve(batch.id).request_counts
            return counts.completed >= REQUESTS * 0.35 and counts
        at_kill = poll(halfway, 60, 0.05, "a third of the batch")
        # Answers in flight now are billed (journaled) but cannot be stored: the database
        # is locked. The kill leaves them running, with their ledger rows in the journal.
        lock = sqlite3.connect(db_path, isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")

        def running() -> set[str]:
            with sqlite3.connect(db_path, timeout=30) as conn:  # WAL: readers are not blocked
                return {rid for (rid,) in conn.execute(
                    "SELECT request_id FROM batch_requests WHERE state = 'running'")}
        # Kill once some answers are billed but not stored (on a loaded machine that can
        # take longer than the half second it takes on a quiet one).
        poll(lambda: running() & _journal_ids(journal), 30, 0.05,
             "an answer journaled while the database is locked")
        time.sleep(0.2)
        server.kill9()
        lock.execute("ROLLBACK")
        lock.close()
        assert at_kill.completed < REQUESTS
        sent_before = len(fake.received)
        cut_off = running()
        # Answered and billed (journaled; the ledger writer may yet insert them), but the
        # answer not stored.
        billed_not_stored = cut_off & _journal_ids(journal)
        assert billed_not_stored, "no answer was billed and lost by the kill"

        restarted = ServeProcess(tmp_path, config, db, journal_dir=journal, env=env).wait_ready()
        client = OpenAI(base_url=f"{restarted.url}/v1", api_key=key["secret"], max_retries=0)
        done = poll(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                    120, 0.2, "the batch to complete after the restart")
        assert done.request_counts.completed == REQUESTS and done.request_counts.failed == 0
        assert done.error_file_id is None

        lines = [json.loads(line) for line in
                 client.files.content(done.output_file_id).text.splitlines()]
        assert len(lines) == REQUESTS
        assert sorted(line["custom_id"] for line in lines) == sorted(
            f"req-{i}" for i in range(REQUESTS))
        for line in lines:
            body = line["response"]["body"]
            assert line["response"]["status_code"] == 200 and line["error"] is None
            question = line["custom_id"].replace("req-", "question ")
            assert body["choices"][0]["message"]["content"] == f"echo: {question}"
            assert body["id"] == "chatcmpl-" + line["response"]["request_id"]
        answered = {line["response"]["request_id"] for line in lines}
        assert len(answered) == REQUESTS

        # The ledger: one row per answer, under its request id, at the batch rate.
        rows = poll(lambda: (rows := [r for r in all_usage(db)
                                      if r.extra.get("batch_id") == batch.id])
                    and len([r for r in rows if r.status == "ok"]) >= REQUESTS and rows,
                    10, 0.1, "the ledger rows of the batch")
        billed = [r for r in rows if r.status == "ok"]
        assert sorted(r.request_id for r in billed) == sorted(answered)
        assert all((r.cost_pico, r.price_pico, r.model, r.key_id) == (COST, PRICE, "batchy",
                                                                      key["id"]) for r in billed)
        assert all(r.price_pico == 0 for r in rows if r.status != "ok")
        # The answers lost with the kill were run again under their ledger ids: billed once.
        assert billed_not_stored <= answered

        # Upstream: every question asked, and asked again only if it was in flight at the kill.
        asked = Counter(r.body["messages"][-1]["content"] for r in fake.received)
        assert set(asked) == {f"question {i}" for i in range(REQUESTS)}
        assert len(fake.received) <= REQUESTS + CONCURRENCY, (len(fake.received), sent_before)
        assert sum(n - 1 for n in asked.values()) <= CONCURRENCY

        # Progress for the operator.
        listed = json.loads(cli("batches", "list", "--database", db, "--json").stdout)
        mine = next(b for b in listed if b["id"] == batch.id)
        assert (mine["status"], mine["succeeded"], mine["total"]) == ("completed", REQUESTS,
                                                                      REQUESTS)
        assert mine["price_usd"] == f"{REQUESTS * PRICE / 10**12:.6f}"
    finally:
        if server.proc.poll() is None:
            server.kill9()
        server.stop()
        if restarted is not None:
            restarted.stop()
        fake.stop()
