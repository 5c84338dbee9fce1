"""Issue #3, the ledger: one row per request with who/what/where/how long, streams billed
from their final usage, and streams that end early billed for what was generated."""

from __future__ import annotations

import json
import math

import anthropic
import httpx
import openai
import pytest

from tests.fakes.script import Reply
from tests.marketplace.helpers import M, all_usage, fresh_key, poll, wait_usage

MSG = [{"role": "user", "content": "price me"}]  # 8 characters
# metering/bounds.input_token_estimate: ceil(8 / 4) + 4 per message
ESTIMATED_INPUT = math.ceil(8 / 4) + 4


def key_ids(gateway, secret):
    key = gateway.app.keys.lookup(secret)
    return key.id, key.customer_id


def rows_for_key(gateway, key_id):
    return [r for r in all_usage(gateway.database_url) if r.key_id == key_id]


def test_n_requests_make_exactly_n_rows(priced, scripted):
    secret = fresh_key(priced)
    key_id, customer_id = key_ids(priced, secret)
    oa = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=secret, max_retries=0)
    an = anthropic.Anthropic(base_url=priced.url, api_key=secret, max_retries=0)
    expected = {}
    for model in ("oa-list", "an-list", "oa-markup"):
        raw = oa.chat.completions.with_raw_response.create(model=model, messages=MSG)
        expected[raw.headers["x-request-id"]] = (model, "openai", False)
    for model in ("an-markup", "oa-list"):
        raw = an.messages.with_raw_response.create(model=model, max_tokens=20, messages=MSG)
        expected[raw.headers["x-request-id"]] = (model, "anthropic", False)
    with an.messages.with_streaming_response.create(model="an-list", max_tokens=20,
                                                    messages=MSG, stream=True) as resp:
        resp.read()
        expected[resp.headers["x-request-id"]] = ("an-list", "anthropic", True)
    for stream in oa.chat.completions.create(model="oa-list", messages=MSG, stream=True):
        pass  # the SDK hides headers here; found below by elimination
    n = len(expected) + 1

    rows = poll(lambda: (lambda rs: rs if len(rs) >= n else None)(rows_for_key(priced, key_id)),
                2.0, 0.05, f"{n} ledger rows")
    assert len(rows) == n, [r.request_id for r in rows]
    assert len({r.request_id for r in rows}) == n
    by_id = {r.request_id: r for r in rows}
    assert set(expected) <= set(by_id)
    for rid, (model, surface, stream) in expected.items():
        row = by_id[rid]
        provider = "openai" if model.startswith("oa") else "anthropic"
        assert (row.model, row.surface, row.stream, row.provider) == (model, surface, stream,
                                                                      provider)
        assert row.deployment == f"{model}/{provider}-0"
    for row in rows:
        assert row.status == "ok" and row.http_status == 200 and row.attempts == 1
        assert row.customer_id == customer_id and row.key_id == key_id
        assert row.latency_ms > 0 and row.price_pico > 0 and row.cost_pico > 0
        assert row.error is None
    # The default reply is 11 tokens in, 7 out: the one row found by elimination is the
    # OpenAI stream, billed from its final usage.
    (last,) = [r for r in rows if r.request_id not in expected]
    assert (last.model, last.stream, last.input_tokens, last.output_tokens) == ("oa-list", True,
                                                                                 11, 7)
    assert last.price_pico == 11 * 2 * M + 7 * 8 * M and last.ttft_ms is not None


@pytest.mark.parametrize("model", ["oa-list", "an-list"])
def test_client_disconnecting_mid_stream_is_billed_for_what_was_generated(priced, scripted,
                                                                         model):
    fake = scripted[0] if model == "oa-list" else scripted[1]
    fake.queue(Reply(text="x" * 400, chunk_size=2, event_delay=0.02, input_tokens=123))
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{priced.url}/v1/chat/completions",
                           headers={"authorization": f"Bearer {priced.key}"},
                           json={"model": model, "messages": MSG, "stream": True}) as resp:
            assert resp.status_code == 200
            rid = resp.headers["x-request-id"]
            seen = 0
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                    if seen == 3:
                        break
    assert fake.client_disconnected.wait(2), "the upstream stream was not closed"
    row = wait_usage(priced.database_url, rid)
    assert row.status == "client_disconnected", row
    assert row.output_tokens > 0 and row.price_pico > 0 and row.cost_pico > 0
    assert row.output_tokens < 100  # far less than the 400 characters it would have been
    if model == "an-list":
        assert row.input_tokens == 123  # Anthropic's message_start says it
    else:
        assert row.input_tokens == ESTIMATED_INPUT  # OpenAI reports usage only at the end
    assert row.extra.get("usage_estimated") is True
    assert len(fake.received) == 1


def test_upstream_failure_mid_stream_is_billed_for_what_was_generated(priced, scripted):
    _, fake_anthropic = scripted
    # message_start (input 50, output 1), ping, content_block_start, then 3 deltas of 2
    # characters, and the connection ends: no message_delta, no message_stop.
    fake_anthropic.queue(Reply(text="abcdefghijklmnop", chunk_size=2, truncate_after=6,
                               input_tokens=50, output_tokens=99))
    resp = httpx.post(f"{priced.url}/v1/messages", timeout=10,
                      headers={"x-api-key": priced.key, "anthropic-version": "2023-06-01"},
                      json={"model": "an-list", "max_tokens": 100, "messages": MSG,
                            "stream": True})
    assert resp.status_code == 200
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    text = "".join(e["delta"].get("text", "") for e in events
                   if e["type"] == "content_block_delta")
    assert text == "abcdef" and events[-1]["type"] == "error"
    row = wait_usage(priced.database_url, resp.headers["x-request-id"])
    assert row.status == "upstream_failed_mid_stream" and row.error
    # Output estimated from 6 characters sent: max(1 from message_start, ceil(6 / 4)) = 2.
    assert (row.input_tokens, row.output_tokens) == (50, 2)
    assert row.price_pico == 50 * 4 * M + 2 * 20 * M == 240_000_000
    assert row.cost_pico == 50 * 3 * M + 2 * 15 * M == 180_000_000
    assert row.extra == {"usage_estimated": True}


def test_openai_upstream_failure_mid_stream_is_billed_from_estimates(priced, scripted):
    fake_openai, _ = scripted
    # role chunk, "ab", "cd", "ef", then the connection ends without [DONE] or usage.
    fake_openai.queue(Reply(text="abcdefghijklmnop", chunk_size=2, truncate_after=4))
    oa = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=priced.key, max_retries=0)
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in oa.chat.completions.create(model="oa-list", messages=MSG, stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text == "abcdef"
    rows = poll(lambda: [r for r in all_usage(priced.database_url)
                         if r.status == "upstream_failed_mid_stream" and r.model == "oa-list"],
                2.0, 0.05, "the mid-stream failure row")
    (row,) = rows
    assert (row.input_tokens, row.output_tokens) == (ESTIMATED_INPUT, math.ceil(6 / 4))
    assert row.price_pico == ESTIMATED_INPUT * 2 * M + 2 * 8 * M
