"""Batches end to end with the official SDKs: OpenAI's Files and Batches
(``client.files.create/retrieve/list/content``, ``client.batches.create/retrieve/list/
cancel``) and Anthropic's Message Batches (``client.messages.batches.create/retrieve/
list/cancel/results``), over the fake upstreams; the batch price in the ledger, budgets,
cancellation, bad input files, and other customers' files."""

from __future__ import annotations

import io
import json

import anthropic
import httpx
import openai
import pytest

from modelmart.core.money import usd_to_pico
from tests.conftest import UPSTREAM_KEY
from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import M, all_usage, ensure_admin_key, fresh_key, poll

# Per million tokens; the fakes' default reply is 11 tokens in, 7 out.
COST = {"input": "1.00", "output": "2.00", "cache_read": "0.50", "cache_write": "1.00"}
PRICE = {"input": "10.00", "output": "20.00", "cache_read": "5.00", "cache_write": "10.00"}
REALTIME_PRICE = 11 * 10 * M + 7 * 20 * M  # 250,000,000 picodollars
BATCH_PRICE = REALTIME_PRICE // 2  # batch_discount 0.5 by default
BATCH_COST = 11 * 1 * M + 7 * 2 * M  # the provider cost stays: no batch_cost_discount


def catalog(fake_openai, fake_anthropic) -> dict:
    oa = {"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake_openai.base_url}/v1",
          "api_key": UPSTREAM_KEY, "cost": COST, "price": PRICE, "retries": {"attempts": 1}}
    an = {"provider": "anthropic", "model": "claude-sonnet-4-5",
          "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY, "cost": COST,
          "price": PRICE, "retries": {"attempts": 1}}
    return {"bundled_model": False, "models": {
        "gpt-b": oa,
        "claude-b": an,
        # A quarter off for batches, and an upstream that bills them at half its cost.
        "gpt-quarter": {**oa, "batch_discount": "0.25", "batch_cost_discount": "0.5"},
        "embed-b": {"provider": "openai", "model": "text-embedding-3-small",
                    "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY,
                    "cost": {"input": 0.02, "output": 0, "caching": False},
                    "price": {"input": 0.04, "output": 0, "caching": False}},
    }}


@pytest.fixture(scope="module")
def gateway(fake_openai, fake_anthropic):
    server = GatewayServer(catalog(fake_openai, fake_anthropic), batch_concurrency=2).start()
    server.admin_key = ensure_admin_key(server.database_url)
    yield server
    server.stop()


@pytest.fixture
def oa(gateway, fakes):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


@pytest.fixture
def an(gateway, fakes):
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


def _jsonl(items: list[dict]) -> io.BytesIO:
    return io.BytesIO("\n".join(json.dumps(i) for i in items).encode())


def _chat_line(custom_id: str, model: str = "gpt-b", text: str | None = None) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "max_tokens": 16,
                     "messages": [{"role": "user", "content": text or f"say {custom_id}"}]}}


def _wait_openai(client, batch_id: str, timeout: float = 30.0):
    return poll(lambda: (b := client.batches.retrieve(batch_id)).status in (
        "completed", "failed", "cancelled", "expired") and b, timeout, 0.05, f"batch {batch_id}")


def _wait_anthropic(client, batch_id: str, timeout: float = 30.0):
    return poll(lambda: (b := client.messages.batches.retrieve(batch_id)).processing_status
                == "ended" and b, timeout, 0.05, f"message batch {batch_id}")


def _ledger(gateway, batch_id: str, count: int) -> list:
    return poll(lambda: len(rows := [r for r in all_usage(gateway.database_url)
                                     if r.extra.get("batch_id") == batch_id]) >= count and rows,
                5, 0.05, "the batch's ledger rows")


def test_openai_batch_of_chat_completions(gateway, oa):
    items = [_chat_line(f"r{i}") for i in range(5)] + [_chat_line("nope", model="no-such-model")]
    data = "\n".join(json.dumps(i) for i in items).encode()
    upload = oa.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
    assert (upload.purpose, upload.bytes, upload.filename) == ("batch", len(data),
                                                               "requests.jsonl")
    assert oa.files.retrieve(upload.id).id == upload.id
    assert upload.id in [f.id for f in oa.files.list()]
    assert oa.files.content(upload.id).content == data

    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                              completion_window="24h", metadata={"job": "nightly"})
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"job": "nightly"}
    done = _wait_openai(oa, batch.id)
    assert done.status == "completed" and done.completed_at and done.in_progress_at
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (6, 5, 1)
    assert batch.id in [b.id for b in oa.batches.list()]

    output = [json.loads(line) for line in oa.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in output] == [f"r{i}" for i in range(5)]
    for o in output:
        body = o["response"]["body"]
        assert o["response"]["status_code"] == 200 and o["error"] is None
        assert o["id"].startswith("batch_req_")
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"echo: say {o['custom_id']}"
        assert body["usage"]["cost"] == BATCH_PRICE / 10**12
    out_file = oa.files.retrieve(done.output_file_id)
    assert (out_file.purpose, out_file.bytes) == ("batch_output",
                                                  len(oa.files.content(done.output_file_id).content))

    errors = [json.loads(line) for line in oa.files.content(done.error_file_id).text.splitlines()]
    assert len(errors) == 1 and errors[0]["custom_id"] == "nope"
    assert errors[0]["response"]["status_code"] == 404
    assert "no-such-model" in errors[0]["response"]["body"]["error"]["message"]

    # An unknown model is refused before there is anything to bill: no ledger row, as
    # outside a batch.
    rows = _ledger(gateway, batch.id, 5)
    assert len(rows) == 5 and all(r.status == "ok" for r in rows)
    assert {r.request_id for r in rows} == {o["response"]["request_id"] for o in output}
    assert all((r.price_pico, r.cost_pico) == (BATCH_PRICE, BATCH_COST) for r in rows)

    # The same request outside a batch costs twice as much.
    reply = oa.chat.completions.with_raw_response.create(
        model="gpt-b", max_tokens=16, messages=[{"role": "user", "content": "say r0"}])
    assert usd_to_pico(reply.headers["x-modelmart-cost"]) == REALTIME_PRICE


def test_batch_discount_and_provider_batch_cost_per_catalog(gateway, oa):
    upload = oa.files.create(file=("q.jsonl", _jsonl([_chat_line("a", "gpt-quarter")])),
                             purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert _wait_openai(oa, batch.id).request_counts.completed == 1
    [row] = _ledger(gateway, batch.id, 1)
    assert row.price_pico == REALTIME_PRICE * 3 // 4 and row.cost_pico == BATCH_COST // 2


def test_openai_batch_of_embeddings(gateway, oa, fake_openai):
    items = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "embed-b", "input": f"text number {i}"}} for i in range(3)]
    upload = oa.files.create(file=("emb.jsonl", _jsonl(items)), purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings",
                              completion_window="24h")
    done = _wait_openai(oa, batch.id)
    assert done.request_counts.completed == 3
    lines = [json.loads(line) for line in oa.files.content(done.output_file_id).text.splitlines()]
    assert all(len(o["response"]["body"]["data"][0]["embedding"]) == 1536 for o in lines)
    rows = _ledger(gateway, batch.id, 3)
    assert all(r.surface == "openai_embeddings" and r.status == "ok" for r in rows)


def test_a_bad_input_file_fails_the_batch_with_its_lines(oa):
    lines = [_chat_line("ok"), {"custom_id": "ok", **{k: v for k, v in _chat_line("x").items()
                                                      if k != "custom_id"}},
             {"custom_id": "elsewhere", "method": "POST", "url": "/v1/embeddings", "body": {}},
             {"custom_id": "streamed", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-b", "stream": True, "messages": []}}]
    raw = b"\n".join([json.dumps(x).encode() for x in lines] + [b"{not json"])
    upload = oa.files.create(file=("bad.jsonl", io.BytesIO(raw)), purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert batch.status == "failed" and batch.failed_at
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "duplicate_custom_id"), (3, "mismatched_endpoint"), (4, "invalid_request"),
        (5, "invalid_json_line")]
    assert "stream" in batch.errors.data[2].message

    with pytest.raises(openai.BadRequestError, match="endpoint"):
        oa.batches.create(input_file_id=upload.id, endpoint="/v1/completions",
                          completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        oa.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions",
                          completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="purpose=batch"):
        oa.files.create(file=("x.jsonl", io.BytesIO(b"{}")), purpose="fine-tune")


def test_other_customers_see_nothing(gateway, oa):
    upload = oa.files.create(file=("mine.jsonl", _jsonl([_chat_line("m")])), purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    other = openai.OpenAI(base_url=f"{gateway.url}/v1", max_retries=0,
                          api_key=fresh_key(gateway, "someone-else"))
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(upload.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(upload.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                             completion_window="24h")
    assert batch.id not in [b.id for b in other.batches.list()]
    assert upload.id not in [f.id for f in other.files.list()]
    # Another key of the same customer does see them.
    same = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=fresh_key(gateway), max_retries=0)
    assert same.batches.retrieve(batch.id).id == batch.id
    _wait_openai(oa, batch.id)


def test_cancel_ends_the_requests_not_run(oa, fake_openai):
    fake_openai.queue(*[Reply(text="slow", delay=0.3) for _ in range(20)])
    upload = oa.files.create(file=("slow.jsonl", _jsonl([_chat_line(f"s{i}") for i in range(20)])),
                             purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    poll(lambda: fake_openai.received, 10, 0.01, "the first request upstream")
    cancelling = oa.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = _wait_openai(oa, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    counts = done.request_counts
    assert counts.completed + counts.failed == 20 and 1 <= counts.completed < 20
    errors = [json.loads(line) for line in oa.files.content(done.error_file_id).text.splitlines()]
    assert len(errors) == counts.failed
    assert all(e["response"] is None and e["error"]["code"] == "batch_cancelled" for e in errors)
    assert len(fake_openai.received) == counts.completed  # nothing cancelled was sent
    with pytest.raises(openai.ConflictError):
        oa.batches.cancel(batch.id)


def test_a_batch_out_of_budget_fails_the_rest_with_402(gateway, fakes, fake_openai):
    # Each request reserves about 90 tokens in at 10.00 and 16 out at 20.00 (~0.0012 USD)
    # and costs 0.000125 USD at the batch rate: a few fit before the reservation does not.
    key = fresh_key(gateway, "thrifty", budget_usd="0.004", period="total")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    upload = client.files.create(file=("b.jsonl", _jsonl([_chat_line(f"b{i}") for i in range(30)])),
                                 purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = _wait_openai(client, batch.id)
    assert done.status == "completed"
    ok, failed = done.request_counts.completed, done.request_counts.failed
    assert ok + failed == 30 and 1 <= ok < 28
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert len(errors) == failed
    assert all(e["response"]["status_code"] == 402 for e in errors)
    assert all(e["response"]["body"]["error"]["code"] == "insufficient_quota" for e in errors)
    assert len(fake_openai.received) == ok
    rows = _ledger(gateway, batch.id, ok + 1)
    assert sum(r.price_pico for r in rows) == ok * BATCH_PRICE <= usd_to_pico("0.004")
    # Out of budget only once the requests in flight had settled: what is left is less
    # than one request's reservation.
    assert usd_to_pico("0.004") - ok * BATCH_PRICE < 1_200_000_000


def test_a_revoked_key_stops_its_batch(gateway, fakes, fake_openai):
    from tests.marketplace.helpers import cli
    secret = fresh_key(gateway, "revoker")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    fake_openai.queue(*[Reply(text="slow", delay=0.3) for _ in range(20)])
    upload = client.files.create(file=("r.jsonl", _jsonl([_chat_line(f"v{i}") for i in range(20)])),
                                 purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    poll(lambda: fake_openai.received, 10, 0.01, "the first request upstream")
    cli("keys", "revoke", secret[:10], "--database", gateway.database_url)
    poll(lambda: gateway.app.keys.lookup(secret) is None, 5, 0.02, "the revocation")
    owner = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=fresh_key(gateway, "revoker"),
                          max_retries=0)
    done = _wait_openai(owner, batch.id)
    errors = [json.loads(line) for line in owner.files.content(done.error_file_id).text.splitlines()]
    assert errors and all(e["response"]["status_code"] == 401 for e in errors)
    assert "revoked" in errors[-1]["response"]["body"]["error"]["message"]
    assert done.request_counts.completed + len(errors) == 20
    assert len(fake_openai.received) == done.request_counts.completed


def test_anthropic_message_batches(gateway, an, fake_anthropic):
    requests = [{"custom_id": f"q{i}", "params": {
        "model": "claude-b", "max_tokens": 32,
        "messages": [{"role": "user", "content": f"question {i}"}]}} for i in range(4)]
    requests.append({"custom_id": "bad", "params": {
        "model": "claude-b", "max_tokens": 32, "messages": []}})
    batch = an.messages.batches.create(requests=requests)
    assert batch.type == "message_batch" and batch.processing_status == "in_progress"
    assert batch.results_url is None
    done = _wait_anthropic(an, batch.id)
    counts = done.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (4, 1, 0)
    assert done.ended_at and done.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    assert batch.id in [b.id for b in an.messages.batches.list()]

    results = {r.custom_id: r.result for r in an.messages.batches.results(batch.id)}
    assert set(results) == {"q0", "q1", "q2", "q3", "bad"}
    for i in range(4):
        assert results[f"q{i}"].type == "succeeded"
        assert results[f"q{i}"].message.content[0].text == f"echo: question {i}"
    assert results["bad"].type == "errored"
    assert results["bad"].error.error.type == "invalid_request_error"

    rows = _ledger(gateway, batch.id, 4)  # the bad one was refused before its model was known
    assert len(rows) == 4 and all(r.surface == "anthropic" and r.status == "ok" for r in rows)
    assert all(r.price_pico == BATCH_PRICE for r in rows)
    assert an.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        an.messages.batches.retrieve(batch.id)


def test_anthropic_cancel_and_bad_requests(an, fake_anthropic):
    fake_anthropic.queue(*[Reply(text="slow", delay=0.3) for _ in range(10)])
    batch = an.messages.batches.create(requests=[{"custom_id": f"c{i}", "params": {
        "model": "claude-b", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]}} for i in range(10)])
    poll(lambda: fake_anthropic.received, 10, 0.01, "the first request upstream")
    assert an.messages.batches.cancel(batch.id).processing_status == "canceling"
    done = _wait_anthropic(an, batch.id)
    assert done.cancel_initiated_at is not None
    results = list(an.messages.batches.results(batch.id))
    kinds = {r.result.type for r in results}
    assert len(results) == 10 and kinds <= {"succeeded", "canceled"} and "canceled" in kinds
    assert done.request_counts.canceled == sum(r.result.type == "canceled" for r in results)

    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        an.messages.batches.create(requests=[
            {"custom_id": "same", "params": {"model": "claude-b", "max_tokens": 1,
                                             "messages": [{"role": "user", "content": "x"}]}}] * 2)
    with pytest.raises(anthropic.BadRequestError, match="stream"):
        an.messages.batches.create(requests=[
            {"custom_id": "s", "params": {"model": "claude-b", "max_tokens": 1, "stream": True,
                                          "messages": [{"role": "user", "content": "x"}]}}])
    with pytest.raises(anthropic.NotFoundError):
        an.messages.batches.retrieve("msgbatch_nope")


def test_results_before_the_end_are_refused(gateway, an, fake_anthropic):
    fake_anthropic.queue(Reply(text="slow", delay=0.5))
    batch = an.messages.batches.create(requests=[{"custom_id": "x", "params": {
        "model": "claude-b", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}])
    resp = httpx.get(f"{gateway.url}/v1/messages/batches/{batch.id}/results",
                     headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
    _wait_anthropic(an, batch.id)


def test_admin_api_lists_batches_with_progress(gateway, oa):
    upload = oa.files.create(file=("adm.jsonl", _jsonl([_chat_line("a1"), _chat_line("a2")])),
                             purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    _wait_openai(oa, batch.id)
    admin = {"authorization": f"Bearer {gateway.admin_key}"}
    poll(lambda: httpx.get(f"{gateway.url}/admin/v1/batches", headers=admin).status_code == 200,
         5, 0.05, "the admin key to be loaded")
    listed = httpx.get(f"{gateway.url}/admin/v1/batches", headers=admin).json()
    mine = next(b for b in listed if b["id"] == batch.id)
    assert (mine["status"], mine["succeeded"], mine["total"], mine["customer"]) == (
        "completed", 2, 2, "acme")
    assert mine["price_usd"] == f"{2 * BATCH_PRICE / 10**12:.6f}"
    one = httpx.get(f"{gateway.url}/admin/v1/batches/{batch.id}", headers=admin).json()
    assert one["done"] == 2
    spec = httpx.get(f"{gateway.url}/admin/openapi.json").json()
    assert "/admin/v1/batches/{batch}/cancel" in spec["paths"]


def test_openai_batch_of_responses(gateway, oa):
    items = [{"custom_id": "resp-1", "method": "POST", "url": "/v1/responses",
              "body": {"model": "gpt-b", "input": "say hello", "max_output_tokens": 16}}]
    upload = oa.files.create(file=("r.jsonl", _jsonl(items)), purpose="batch")
    batch = oa.batches.create(input_file_id=upload.id, endpoint="/v1/responses",
                              completion_window="24h")
    done = _wait_openai(oa, batch.id)
    [line] = [json.loads(x) for x in oa.files.content(done.output_file_id).text.splitlines()]
    body = line["response"]["body"]
    assert body["object"] == "response" and body["output"][0]["content"][0]["text"] == (
        "echo: say hello")
    [row] = _ledger(gateway, batch.id, 1)
    assert (row.surface, row.price_pico) == ("openai_responses", BATCH_PRICE)
