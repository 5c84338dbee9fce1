"""Graceful shutdown (issue #15): SIGTERM while a stream and other requests are in flight;
they all complete, the server exits 0, and every one of them has its ledger row."""

from __future__ import annotations

import signal
import threading
import time

import openai
import pytest

from tests.fakes.script import Reply
from tests.marketplace.helpers import (
    ServeProcess, all_usage, create_customer, cli_key, priced_catalog, write_config,
)

# 60 deltas of 3 characters, 0.12 s apart: the stream outlasts the old 5 s grace.
TEXT = "the quick brown fox jumps over the lazy dog " * 4 + "away"


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_streams_in_flight_finish_and_every_row_lands(
        tmp_path, fake_openai, fake_anthropic, scripted, workers):
    database = f"sqlite:///{tmp_path / 'mm.db'}"
    create_customer(database, "acme")
    secret = cli_key(database, "acme")["secret"]
    config = write_config(tmp_path, priced_catalog(fake_openai, fake_anthropic))
    server = ServeProcess(tmp_path, config, database, workers=workers)
    try:
        _sigterm_in_flight(server, secret, fake_openai, database)
    finally:
        server.stop()


def _sigterm_in_flight(server, secret, fake_openai, database) -> None:
    server.wait_ready()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=secret, max_retries=0)
    # One slow stream (about 7 s) and three slow whole answers, in flight together.
    assert len(TEXT) == 180
    fake_openai.queue(Reply(text=TEXT, event_delay=0.12, output_tokens=60),
                      *(Reply(text="done", delay=1.5) for _ in range(3)))
    first_chunk = threading.Event()
    streamed: dict = {"text": "", "finish": None, "id": None}
    answers: list = []

    def stream() -> None:
        raw = client.chat.completions.with_raw_response.create(
            model="oa-list", messages=[{"role": "user", "content": "long"}], stream=True,
            stream_options={"include_usage": True})
        streamed["id"] = raw.headers["x-request-id"]
        for chunk in raw.parse():
            if chunk.choices:
                streamed["text"] += chunk.choices[0].delta.content or ""
                streamed["finish"] = chunk.choices[0].finish_reason or streamed["finish"]
            first_chunk.set()

    def whole() -> None:
        raw = client.chat.completions.with_raw_response.create(
            model="oa-list", messages=[{"role": "user", "content": "short"}])
        answers.append((raw.headers["x-request-id"], raw.parse().choices[0].message.content))

    threads = [threading.Thread(target=stream)]
    threads[0].start()
    assert first_chunk.wait(10), server.log()
    for _ in range(3):
        threads.append(threading.Thread(target=whole))
        threads[-1].start()
    time.sleep(0.5)  # the three are upstream now
    server.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert server.proc.wait(30) == 0, server.log()
    assert streamed["text"] == TEXT and streamed["finish"] == "stop"
    assert [text for _, text in answers] == ["done"] * 3
    rows = {r.request_id: r for r in all_usage(database)}
    assert set(rows) == {streamed["id"], *(rid for rid, _ in answers)}
    assert rows[streamed["id"]].status == "ok" and rows[streamed["id"]].output_tokens == 60
