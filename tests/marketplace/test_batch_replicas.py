"""Batches on PostgreSQL across two replicas: a file uploaded to one is used by a batch
made on the other, one replica runs it under its lease while the other keeps off (each
request runs once), and either serves the results; the ledger rows at the batch rate."""

from __future__ import annotations

import io
import json
from collections import Counter

import openai

from tests.harness import GatewayServer
from tests.marketplace.helpers import M, all_usage, poll, priced_catalog
from tests.pg import create_database, run_async

REQUESTS = 40
# oa-list: list price 2.00 in, 8.00 out per M; the fake's 11 in and 7 out; 50% off.
BATCH_PRICE = (11 * 2 * M + 7 * 8 * M) // 2


def test_two_replicas_run_a_batch_once(postgres_url, fake_openai, fake_anthropic, scripted):
    catalog = priced_catalog(fake_openai, fake_anthropic)
    # A database of its own: the session's is shared with tests that count its rows.
    database = run_async(create_database(postgres_url, "batch_replicas"))
    first = GatewayServer(catalog, database_url=database, batch_concurrency=4).start()
    second = GatewayServer(catalog, database_url=database, batch_concurrency=4).start()
    try:
        a = openai.OpenAI(base_url=f"{first.url}/v1", api_key=first.key, max_retries=0)
        b = openai.OpenAI(base_url=f"{second.url}/v1", api_key=second.key, max_retries=0)
        lines = "\n".join(json.dumps({
            "custom_id": f"pg-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "oa-list", "messages": [{"role": "user", "content": f"pg {i}"}]}})
            for i in range(REQUESTS))
        upload = a.files.create(file=("pg.jsonl", io.BytesIO(lines.encode())), purpose="batch")
        batch = b.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                 completion_window="24h")
        done = poll(lambda: (x := a.batches.retrieve(batch.id)).status == "completed" and x,
                    60, 0.1, "the batch on PostgreSQL")
        assert done.request_counts.completed == REQUESTS
        output = b.files.content(done.output_file_id).text.splitlines()
        assert sorted(json.loads(line)["custom_id"] for line in output) == sorted(
            f"pg-{i}" for i in range(REQUESTS))
        asked = Counter(r.body["messages"][-1]["content"] for r in fake_openai.received)
        assert asked == Counter(f"pg {i}" for i in range(REQUESTS))  # each once
        rows = poll(lambda: len(x := [r for r in all_usage(database)
                                      if r.extra.get("batch_id") == batch.id]) == REQUESTS and x,
                    10, 0.1, "the ledger rows")
        assert all(r.price_pico == BATCH_PRICE and r.status == "ok" for r in rows)
    finally:
        first.stop()
        second.stop()
