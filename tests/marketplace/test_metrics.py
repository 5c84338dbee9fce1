"""Issue #15: ``/metrics`` in Prometheus' text format, behind the admin key; its counters equal
the ledger's totals exactly (money in picodollars, as the ledger keeps it), its histograms
count every request that reached a model."""

from __future__ import annotations

from collections import defaultdict

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.script import Reply
from tests.marketplace.helpers import all_usage, ensure_admin_key, fresh_key, poll

MSG = [{"role": "user", "content": "hello"}]


def _scrape(gateway, admin: str) -> dict:
    resp = httpx.get(f"{gateway.url}/metrics", headers={"authorization": f"Bearer {admin}"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = defaultdict(float)
    buckets = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets[(s.name, tuple(sorted(s.labels.items())))] = s.value
                continue
            samples[s.name] += s.value
            if s.name == "modelmart_requests_total":
                samples[("requests", s.labels["status"])] += s.value
    return samples


@pytest.fixture(scope="module")
def admin(priced):
    return ensure_admin_key(priced.database_url)


def test_metrics_need_the_admin_key(priced):
    assert httpx.get(f"{priced.url}/metrics").status_code == 401
    resp = httpx.get(f"{priced.url}/metrics", headers={"authorization": f"Bearer {priced.key}"})
    assert resp.status_code == 403


def test_counters_equal_the_ledger(priced, scripted, admin):
    fake_openai, fake_anthropic = scripted
    key = fresh_key(priced, rpm=6)
    client = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=key, max_retries=0)
    fake_openai.queue(*[Reply(text="hi", input_tokens=13 + i, output_tokens=5 + i,
                              cache_read_tokens=i) for i in range(3)])
    for _ in range(3):
        client.chat.completions.create(model="oa-list", max_tokens=20, messages=MSG)
    fake_anthropic.queue(Reply(text="streamed", input_tokens=40, output_tokens=9,
                               cache_write_tokens=3))
    for _ in client.chat.completions.create(model="an-list", max_tokens=20, messages=MSG,
                                            stream=True):
        pass
    fake_openai.queue(Reply(error_status=400, error_message="bad"))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="oa-list", max_tokens=20, messages=MSG)
    for _ in range(3):  # the sixth is admitted, the seventh and eighth are refused
        try:
            client.chat.completions.create(model="oa-list", max_tokens=20, messages=MSG)
        except openai.RateLimitError:
            pass
    rows = poll(lambda: (lambda rs: rs if len(rs) == 8 else None)(
        [r for r in all_usage(priced.database_url)
         if r.key_id == priced.app.keys.lookup(key).id]), 3.0, what="eight ledger rows")
    # Other tests share this gateway: compare what this key's customer added, by difference
    # from the whole ledger, which /metrics must equal too.
    every = all_usage(priced.database_url)
    m = _scrape(priced, admin)
    assert m["modelmart_requests_total"] == len(every)
    assert m["modelmart_input_tokens_total"] == sum(r.input_tokens for r in every)
    assert m["modelmart_output_tokens_total"] == sum(r.output_tokens for r in every)
    assert m["modelmart_cache_read_tokens_total"] == sum(r.cache_read_tokens for r in every)
    assert m["modelmart_cache_write_tokens_total"] == sum(r.cache_write_tokens for r in every)
    assert m["modelmart_cost_picodollars_total"] == sum(r.cost_pico for r in every)
    assert m["modelmart_revenue_picodollars_total"] == sum(r.price_pico for r in every)
    assert m["modelmart_margin_picodollars"] == sum(r.price_pico - r.cost_pico for r in every)
    refused = [r for r in every if r.status == "refused"]
    assert m[("requests", "refused")] == len(refused) >= 2
    assert m["modelmart_refusals_total"] == len(refused)
    assert m["modelmart_request_duration_seconds_count"] == len(every) - len(refused)
    assert m["modelmart_time_to_first_token_seconds_count"] == sum(
        1 for r in every if r.ttft_ms is not None) >= 1
    assert {r.status for r in rows} >= {"ok", "error", "refused"}


def test_deployment_state_is_exported(priced, admin):
    text = httpx.get(f"{priced.url}/metrics",
                     headers={"authorization": f"Bearer {admin}"}).text
    assert 'modelmart_deployment_state{deployment="oa-list/openai-0",model="oa-list",state="healthy"}' in text
    assert "modelmart_ledger_backlog_records" in text


def test_ready_checks_store_limits_and_deployments(priced):
    resp = httpx.get(f"{priced.url}/ready")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["checks"]["store"] == "ok" and body["checks"]["limits"] == "ok"
    assert body["checks"]["deployments"].startswith("ok")
    assert httpx.get(f"{priced.url}/health").status_code == 200


def test_ready_fails_when_no_deployment_is_usable(fake_openai):
    from tests.harness import GatewayServer

    catalog = {"bundled_model": False, "models": {"locked": {
        "provider": "openai", "base_url": f"{fake_openai.base_url}/v1", "api_key": "sk-wrong",
        "cost": {"input": "1", "output": "1", "cache_read": "1", "cache_write": "1"}}}}
    gateway = GatewayServer(catalog).start()
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="locked", messages=MSG)
        resp = httpx.get(f"{gateway.url}/ready")
        assert resp.status_code == 503
        assert resp.json()["checks"]["deployments"].startswith("failing")
        assert httpx.get(f"{gateway.url}/health").status_code == 200  # alive, not ready
    finally:
        gateway.stop()


def test_serve_with_workers_answers_metrics_for_all_on_a_port_of_its_own(fake_openai, tmp_path):
    """``serve --workers 2 --metrics-port P``: each worker publishes its figures, any worker
    answers a scrape for all; no admin key on that port; JSON logs carry request ids."""
    import json

    from tests.fakes.script import free_port
    from tests.marketplace.helpers import (
        UPSTREAM_KEY, ServeProcess, cli, cli_key, write_config,
    )

    config = write_config(tmp_path, {"bundled_model": False, "models": {"m": {
        "provider": "openai", "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY,
        "cost": {"input": "1", "output": "2", "cache_read": "1", "cache_write": "1"}}}})
    db = f"sqlite:///{tmp_path / 'm.db'}"
    cli("customers", "create", "metered", "--database", db)
    key = cli_key(db, "metered")["secret"]
    port = free_port()
    server = ServeProcess(tmp_path, config, db, workers=2,
                          extra_args=["--metrics-port", str(port), "--log-format", "json",
                                      "--log-level", "info"])
    try:
        server.wait_ready()
        for _ in range(20):  # fresh connections: the kernel spreads them over both workers
            assert httpx.post(f"{server.url}/v1/chat/completions", timeout=10,
                              headers={"authorization": f"Bearer {key}"},
                              json={"model": "m", "messages": MSG}).status_code == 200

        def total() -> float:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return sum(s.value for f in text_string_to_metric_families(text)
                       for s in f.samples if s.name == "modelmart_requests_total")
        poll(lambda: total() == 20, 5.0, 0.2, "both workers' requests in one scrape")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 404
        lines = [json.loads(line) for line in server.log().splitlines()
                 if line.startswith("{")]
        assert any("ready" in entry["message"] for entry in lines), server.log()[:2000]
    finally:
        server.stop()


def test_log_lines_of_a_request_carry_its_id(fake_openai, caplog):
    """A warning logged while a request is served (here: the upstream rejects the gateway's
    key) carries that request's id, in text and JSON logs alike."""
    import json
    import logging

    from modelmart.api import logs
    from tests.harness import GatewayServer

    logs.stamp_records()
    catalog = {"bundled_model": False, "models": {"locked": {
        "provider": "openai", "base_url": f"{fake_openai.base_url}/v1", "api_key": "sk-wrong",
        "cost": {"input": "1", "output": "1", "cache_read": "1", "cache_write": "1"}}}}
    gateway = GatewayServer(catalog).start()
    try:
        with caplog.at_level(logging.WARNING):
            resp = httpx.post(f"{gateway.url}/v1/chat/completions",
                              headers={"authorization": f"Bearer {gateway.key}"},
                              json={"model": "locked", "messages": MSG})
        rid = resp.headers["x-request-id"]
        mine = [r for r in caplog.records if getattr(r, "request_id", None) == rid]
        assert mine, [(r.getMessage(), getattr(r, "request_id", None)) for r in caplog.records]
        line = json.loads(logs.JsonFormatter().format(mine[0]))
        assert line["request_id"] == rid and "sk-wrong" not in line["message"]
    finally:
        gateway.stop()
