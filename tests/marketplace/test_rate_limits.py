"""Issue #3, rate limits: requests and tokens per minute, per key and per customer, in each
dialect, and held together by several gateway processes (Redis; the built-in coordinator
of ``serve --workers``). Issue #12: never more than the limit in any 60 seconds, and
headers that agree (the promise itself is tested with a fake clock in tests/tenancy)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import (
    UPSTREAM_KEY, ServeProcess, cli, cli_key, create_customer, fresh_key, poll, priced_catalog,
    write_config,
)

# 5 bytes: reserved as 5 + 64 (the template) + 2 * 8 (the message's and the reply's markers)
# = 85 tokens (metering/bounds.py).
MSG = [{"role": "user", "content": "hello"}]


def _oa(url, key):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _seconds(duration: str) -> float:
    """OpenAI's duration format: ``20ms``, ``1.5s``, ``1m0.75s``."""
    if duration.endswith("ms"):
        return int(duration[:-2]) / 1000
    minutes, _, seconds = duration[:-1].rpartition("m")
    return 60 * int(minutes or 0) + float(seconds)


def _check_429_headers(headers, limit):
    # The requests just admitted leave the window 60-61 s after their second: the wait and
    # the reset are never longer than the window plus a bucket.
    assert 1 <= int(headers["retry-after"]) <= 61
    assert 0 < int(headers["retry-after-ms"]) <= 61_000
    assert int(headers["retry-after"]) == -(-int(headers["retry-after-ms"]) // 1000)
    assert headers["x-ratelimit-limit-requests"] == str(limit)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 0 < _seconds(headers["x-ratelimit-reset-requests"]) <= 61


def test_rpm_in_the_openai_dialect(priced, scripted):
    key = fresh_key(priced, rpm=5)
    client = _oa(priced.url, key)
    remaining = []
    for _ in range(5):
        raw = client.chat.completions.with_raw_response.create(model="oa-list", messages=MSG)
        assert raw.headers["x-ratelimit-limit-requests"] == "5"
        assert 60 < _seconds(raw.headers["x-ratelimit-reset-requests"]) <= 61
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="oa-list", messages=MSG)
    assert e.value.status_code == 429
    assert e.value.body["type"] == "rate_limit_error" and "5 requests per minute" in e.value.message
    _check_429_headers(e.value.response.headers, 5)
    assert len(scripted[0].received) == 5


def test_rpm_in_the_anthropic_dialect(priced, scripted):
    key = fresh_key(priced, rpm=5)
    client = anthropic.Anthropic(base_url=priced.url, api_key=key, max_retries=0)
    for _ in range(5):
        client.messages.create(model="an-list", max_tokens=20, messages=MSG)
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="an-list", max_tokens=20, messages=MSG)
    assert e.value.status_code == 429
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "rate_limit_error"
    _check_429_headers(e.value.response.headers, 5)
    assert len(scripted[1].received) == 5


def _customer_limit_holds(url, keys, limit, customer):
    outcomes = []
    for i in range(limit + 2):
        try:
            _oa(url, keys[i % 2]).chat.completions.create(model="oa-list", messages=MSG)
            outcomes.append(200)
        except openai.RateLimitError as exc:
            assert f"customer {customer}" in exc.message, exc.message
            _check_429_headers(exc.response.headers, limit)
            outcomes.append(429)
    assert outcomes == [200] * limit + [429, 429]


def test_customer_rpm_across_two_keys(fake_openai, fake_anthropic, scripted, tmp_path):
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    create_customer(db, "initech", rpm=4)
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic), database_url=db,
                           key_options={}).start()
    try:
        keys = [fresh_key(server, "initech"), fresh_key(server, "initech")]
        _customer_limit_holds(server.url, keys, 4, "initech")
    finally:
        server.stop()


def test_customer_created_by_the_cli_on_a_running_server_gets_its_rpm(priced, scripted):
    """Limits of a customer added while the gateway runs take effect (like its keys do)."""
    made = cli("customers", "create", "umbrella", "--rpm", "3", "--json",
               "--database", priced.database_url)
    customer_id = json.loads(made.stdout)["id"]
    keys = [cli_key(priced.database_url, "umbrella")["secret"] for _ in range(2)]
    for key in keys:
        poll(lambda: priced.app.keys.lookup(key), 2.0, 0.02, "the CLI keys to load")
    poll(lambda: priced.app.customer_limits.get(customer_id), 2.0, 0.02,
         "the new customer's limits to load")
    _customer_limit_holds(priced.url, keys, 3, "umbrella")


def test_tpm_counts_estimated_then_actual_tokens(priced, scripted):
    fake_openai, _ = scripted
    key = fresh_key(priced, tpm=300)
    client = _oa(priced.url, key)
    # Too big to ever fit: the prompt's bound (85) + max_tokens 300 > 300.
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="oa-list", max_tokens=300, messages=MSG)
    assert "385 tokens is larger than" in e.value.message and "300 tokens" in e.value.message
    assert not fake_openai.received
    # Admitted on its bound (85 + 50 = 135), then corrected to its actual 200 + 10 = 210.
    fake_openai.queue(Reply(text="ok", input_tokens=200, output_tokens=10))
    raw = client.chat.completions.with_raw_response.create(model="oa-list", max_tokens=50,
                                                           messages=MSG)
    assert raw.headers["x-ratelimit-limit-tokens"] == "300"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "165"
    # 210 counted + 135 reserved > 300.
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="oa-list", max_tokens=50, messages=MSG)
    assert "tokens per minute" in e.value.message
    assert e.value.response.headers["x-ratelimit-remaining-tokens"] == "90"
    # A request that fits the 90 left is admitted: 85 + 5.
    client.chat.completions.create(model="oa-list", max_tokens=5, messages=MSG)


# ---- across processes -------------------------------------------------------------------

def _serve_setup(folder: Path, fake_openai) -> tuple[Path, str]:
    catalog = {"bundled_model": False, "models": {"shared": {
        "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake_openai.base_url}/v1",
        "api_key": UPSTREAM_KEY,
        "cost": {"input": "1", "output": "2", "cache_read": "0.5", "cache_write": "1"},
        "price": {"markup": "0.5"}}}}
    return write_config(folder, catalog), f"sqlite:///{folder / 'mm.db'}"


def _fan_out(urls: list[str], key: str, n: int) -> list[int]:
    """n requests, round-robin over urls, four at a time, each on a fresh connection."""
    def one(i):
        resp = httpx.post(f"{urls[i % len(urls)]}/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": "shared", "messages": MSG})
        return resp.status_code
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def test_two_gateway_processes_share_one_rpm_through_redis(fake_openai, redis_server):
    with tempfile.TemporaryDirectory(prefix="mm-redis-gw-") as tmp:
        folder = Path(tmp)
        config, db = _serve_setup(folder, fake_openai)
        cli("customers", "create", "hooli", "--database", db)
        key = cli_key(db, "hooli", "--rpm", "10")["secret"]
        env = {"MODELMART_REDIS_URL": redis_server}
        one = ServeProcess(folder, config, db, env=env, journal_dir=folder / "j1")
        two = None
        try:
            one.wait_ready()
            two = ServeProcess(folder, config, db, env=env, journal_dir=folder / "j2").wait_ready()
            statuses = _fan_out([one.url, two.url], key, 20)
            # The first start printed the admin key, once; it works on the other process.
            printed = [line for line in one.log().splitlines()
                       if "admin key (admin API only; shown once): mm-" in line]
            assert len(printed) == 1 and "admin key" not in two.log()
            admin_key = printed[0].rsplit(" ", 1)[1]
            resp = httpx.get(f"{two.url}/admin/v1/customers", timeout=10,
                             headers={"authorization": f"Bearer {admin_key}"})
            assert resp.status_code == 200 and [c["name"] for c in resp.json()] == ["hooli"]
        finally:
            one.stop()
            if two is not None:
                two.stop()
    assert sorted(statuses) == [200] * 10 + [429] * 10, statuses
    # Each process admitted some: one limit held by both, not ten per process.
    assert 200 in statuses[0::2] and 200 in statuses[1::2], statuses


def test_serve_workers_share_one_rpm_through_the_coordinator(fake_openai):
    with tempfile.TemporaryDirectory(prefix="mm-workers-") as tmp:
        folder = Path(tmp)
        config, db = _serve_setup(folder, fake_openai)
        cli("customers", "create", "pied-piper", "--database", db)
        made = cli_key(db, "pied-piper", "--rpm", "10")
        key = made["secret"]
        journal = folder / "journal"
        server = ServeProcess(folder, config, db, workers=2, journal_dir=journal)
        try:
            server.wait_ready()
            statuses = _fan_out([server.url], key, 20)
            # Keys made and revoked by the CLI reach every worker within a poll interval.
            cli("keys", "revoke", str(made["id"]), "--database", db)
            fresh = cli_key(db, "pied-piper")["secret"]
            changed = time.monotonic()
            seen = []

            def both_seen() -> bool:
                asked = time.monotonic()  # the check's own requests take time under load
                if (_fan_out([server.url], key, 8) == [401] * 8
                        and _fan_out([server.url], fresh, 8) == [200] * 8):
                    seen.append(asked)
                return bool(seen)
            poll(both_seen, 5.0, 0.05, "both workers to see the revocation and the new key")
            assert seen[0] - changed < 1.5
            # Each worker journals the requests it served in segments named by its pid.
            pids = {name.split("-")[0] for name in os.listdir(journal)
                    if name.endswith(".usage.jsonl")}
        finally:
            server.stop()
    assert sorted(statuses) == [200] * 10 + [429] * 10, statuses
    assert len(pids) == 2, f"only {pids} served requests: the test did not reach both workers"
