"""Issue #3, "a ledger that never loses a cent": `modelmart serve` is killed with SIGKILL
under load, restarted on the same database and journal, and every request a client was
answered for is billed exactly once."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.fakes.openai_server import FakeOpenAI
from tests.marketplace.helpers import (
    M, UPSTREAM_KEY, ServeProcess, all_usage, cli, cli_key, write_config,
)

CLIENTS = 8
# The fake's default reply is 11 tokens in and 7 out.
COST = 11 * 1 * M + 7 * 2 * M  # 1.00 in, 2.00 out per million tokens
PRICE = 11 * 3 * M + 7 * 6 * M  # 3.00 in, 6.00 out
assert (COST, PRICE) == (25_000_000, 75_000_000)


def _journal_ids(folder: Path) -> list[str]:
    ids = []
    for path in folder.glob("*.usage.jsonl"):
        for line in path.read_bytes().split(b"\n"):
            if line.strip():
                try:
                    ids.append(json.loads(line)["request_id"])
                except ValueError:
                    pass  # a line torn by the kill is not a record the client could have seen
    return ids


def test_kill_9_under_load_loses_no_record_and_doubles_none(tmp_path):
    fake = FakeOpenAI(api_key=UPSTREAM_KEY).start()
    config = write_config(tmp_path, {"bundled_model": False, "models": {"crashy": {
        "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake.base_url}/v1",
        "api_key": UPSTREAM_KEY,
        "cost": {"input": "1.00", "output": "2.00", "cache_read": "0.50", "cache_write": "1.00"},
        "price": {"input": "3.00", "output": "6.00", "cache_read": "1.50", "cache_write": "3.00"},
    }}})
    db_path = tmp_path / "ledger.db"
    db = f"sqlite:///{db_path}"
    journal = tmp_path / "journal"
    cli("customers", "create", "crashco", "--database", db)
    key = cli_key(db, "crashco")
    server = ServeProcess(tmp_path, config, db, journal_dir=journal).wait_ready()
    restarted = None
    answered: list[str] = []  # request ids of every 200 a client received
    answered_while_db_locked: list[str] = []
    db_locked = threading.Event()
    killed = threading.Event()
    failures: list[str] = []

    def client():
        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {key['secret']}"}) as c:
            while not killed.is_set():
                try:
                    resp = c.post(f"{server.url}/v1/chat/completions",
                                  json={"model": "crashy",
                                        "messages": [{"role": "user", "content": "load"}]})
                except httpx.HTTPError:
                    if not killed.is_set():
                        failures.append("transport error before the kill")
                    return
                if resp.status_code == 200:
                    answered.append(resp.headers["x-request-id"])
                    if db_locked.is_set():
                        answered_while_db_locked.append(resp.headers["x-request-id"])
                elif not killed.is_set():
                    failures.append(f"{resp.status_code} {resp.text[:200]}")

    try:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        # Enough answered first (counted, not timed: a loaded machine answers fewer a second).
        deadline = time.monotonic() + 30
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Stall the ledger writer (another process holds SQLite's write lock) while requests
        # keep being answered: their records are only in the journal when the kill comes.
        lock = sqlite3.connect(db_path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        db_locked.set()
        deadline = time.monotonic() + 30
        while (len(answered_while_db_locked) < 15 or len(answered) <= 55) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        killed.set()  # first: from here on a transport error is the kill's doing
        server.kill9()
        for t in threads:
            t.join(10)
        lock.execute("ROLLBACK")
        lock.close()

        assert not failures, failures[:5]
        assert len(answered) > 50 and answered_while_db_locked, (len(answered),
                                                                 len(answered_while_db_locked))
        stored_before = {r.request_id for r in all_usage(db)}
        journaled = _journal_ids(journal)
        written = stored_before | set(journaled)  # every record the dead server wrote
        assert set(answered) <= written
        only_in_journal = set(journaled) - stored_before
        assert set(answered_while_db_locked) <= only_in_journal

        restarted = ServeProcess(tmp_path, config, db, journal_dir=journal).wait_ready()
        # The replay runs at startup, before the server answers.
        rows = all_usage(db)
        ids = [r.request_id for r in rows]
        assert len(ids) == len(set(ids)), "a request was recorded twice"
        assert set(ids) == written, (len(set(ids)), len(written))
        assert len(rows) <= len(fake.received)  # no row without an upstream call behind it
        by_id = {r.request_id: r for r in rows}
        for rid in answered:
            row = by_id[rid]
            assert (row.status, row.model, row.key_id) == ("ok", "crashy", key["id"])
            assert (row.input_tokens, row.output_tokens) == (11, 7)
            assert (row.cost_pico, row.price_pico) == (COST, PRICE), row
        assert all(r.status == "ok" and r.price_pico == PRICE for r in rows)
        # The dead server's segments were replayed and removed; the new one owns its own.
        assert not set(_journal_ids(journal)) & only_in_journal

        # The restarted server bills on as before.
        resp = httpx.post(f"{restarted.url}/v1/chat/completions", timeout=10,
                          headers={"authorization": f"Bearer {key['secret']}"},
                          json={"model": "crashy", "messages": [{"role": "user", "content": "x"}]})
        assert resp.status_code == 200 and resp.headers["x-modelmart-cost"] == "0.000075000000"
    finally:
        killed.set()
        if server.proc.poll() is None:
            server.kill9()
        server.stop()
        if restarted is not None:
            restarted.stop()
        fake.stop()
