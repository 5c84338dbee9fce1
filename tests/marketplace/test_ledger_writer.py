"""`modelmart serve` on SQLite runs a ledger writer process beside its worker: usage goes
through it; if it dies the worker bills by itself until serve has started another. Nothing
lost, nothing doubled."""

from __future__ import annotations

import os
import signal

import httpx
import psutil

from tests.fakes.openai_server import FakeOpenAI
from tests.marketplace.helpers import (
    UPSTREAM_KEY, ServeProcess, all_usage, cli, cli_key, poll, write_config,
)


def _writer_of(server: ServeProcess) -> psutil.Process | None:
    """The live writer under ``serve``, if any."""
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if ("modelmart.metering.writer import main" in " ".join(child.cmdline())
                    and child.status() != psutil.STATUS_ZOMBIE):
                return child
        except psutil.NoSuchProcess:
            pass
    return None


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_usage_goes_through_the_writer_and_survives_its_death(tmp_path):
    fake = FakeOpenAI(api_key=UPSTREAM_KEY).start()
    config = write_config(tmp_path, {"bundled_model": False, "models": {"m": {
        "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake.base_url}/v1",
        "api_key": UPSTREAM_KEY, "cost": {"input": "1.00", "output": "2.00", "cache_read": "0.50", "cache_write": "1.00"},
        "price": {"input": "3.00", "output": "6.00", "cache_read": "1.50", "cache_write": "3.00"},
    }}})
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    cli("customers", "create", "acme", "--database", db)
    key = cli_key(db, "acme")
    server = ServeProcess(tmp_path, config, db).wait_ready()
    ids: list[str] = []
    try:
        writer = _writer_of(server)
        assert writer is not None, "serve started no ledger writer"

        def call(client: httpx.Client) -> None:
            resp = client.post(f"{server.url}/v1/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status_code == 200, resp.text
            ids.append(resp.headers["x-request-id"])

        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {key['secret']}"}) as c:
            for _ in range(20):
                call(c)
            poll(lambda: len(all_usage(db)) == 20, 5.0, what="20 ledger rows via the writer")
            os.kill(writer.pid, signal.SIGKILL)
            poll(lambda: _gone(writer), 5.0, what="the writer to die")
            for _ in range(20):
                call(c)
            poll(lambda: len(all_usage(db)) == 40, 5.0, what="40 ledger rows without the writer")
            poll(lambda: (w := _writer_of(server)) is not None and w.pid != writer.pid, 10.0,
                 what="a new writer")
            for _ in range(10):
                call(c)
            poll(lambda: len(all_usage(db)) == 50, 5.0, what="50 ledger rows")
    finally:
        server.stop()
        fake.stop()
    rows = all_usage(db)
    assert sorted(r.request_id for r in rows) == sorted(ids)
    assert all(r.price_pico > 0 for r in rows)
