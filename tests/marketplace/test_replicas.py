"""Two replicas (``modelmart serve`` processes) on one PostgreSQL and one Redis (issue #15):
load split across both keeps an rpm limit and a budget, a revocation through one is
refused by the other within a second, /metrics equals the ledger, and a Redis outage in
the middle is survived loudly (per-replica limits, a warning, the metric, /ready degraded)
and recovered from."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelmart.tenancy import accounts
from tests.marketplace.helpers import (
    ServeProcess, _with_store, all_usage, create_customer, ensure_admin_key, poll,
    priced_catalog, write_config,
)
from tests.pg import PostgresProcess, run_async
from tests.redis_server import RedisProcess

PROMPT = [{"role": "user", "content": "hi"}]


def new_key(cluster, customer: str, **options) -> tuple[int, str]:
    """A new key, once both replicas' key caches have it."""
    key, secret = run_async(_with_store(cluster.pg.url, lambda s: accounts.create_key(
        s, customer, **options)))
    # An unknown model is a 404 for a known key (a 401 for an unknown one), counts against
    # no limit and leaves no ledger row.
    body = {"model": "no-such-model", "messages": PROMPT}
    for replica in cluster.replicas:
        poll(lambda: httpx.post(f"{replica.url}/v1/chat/completions", json=body, headers={
            "Authorization": f"Bearer {secret}"}).status_code == 404, 5, 0.05, "the new key")
    return key.id, secret


class Cluster:
    def __init__(self, folder, fake_openai, fake_anthropic) -> None:
        self.pg = PostgresProcess()
        self.redis = RedisProcess().start()
        self.admin = {"Authorization": f"Bearer {ensure_admin_key(self.pg.url)}"}
        create_customer(self.pg.url, "acme")
        config = write_config(folder, priced_catalog(fake_openai, fake_anthropic))
        env = {"MODELMART_REDIS_URL": self.redis.url}
        self.replicas = []
        for i in range(2):
            (folder / f"r{i}").mkdir()
            self.replicas.append(ServeProcess(folder / f"r{i}", config, self.pg.url, env=env))
        for replica in self.replicas:
            replica.wait_ready()
        # Each counts the other by heartbeat (every 2 s) before limits are shared out.
        poll(lambda: all(self.gauge(r, "modelmart_limits_replicas") == 2
                         for r in self.replicas), 10, 0.2, "both replicas' heartbeats")

    def scrape(self, replica) -> dict[str, float]:
        """Every sample of /metrics summed over its labels, by sample name."""
        resp = httpx.get(f"{replica.url}/metrics", headers=self.admin, timeout=10)
        assert resp.status_code == 200, resp.text
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    continue
                sums[sample.name] = sums.get(sample.name, 0) + sample.value
        return sums

    def gauge(self, replica, name: str) -> float | None:
        return self.scrape(replica).get(name)

    def close(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.redis.close()
        self.pg.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, fake_openai, fake_anthropic):
    c = Cluster(tmp_path_factory.mktemp("replicas"), fake_openai, fake_anthropic)
    yield c
    c.close()


async def _load(cluster, secret: str, n: int, concurrency: int = 8, max_tokens: int = 16,
                scrapes: list | None = None) -> list[int]:
    """``n`` chat requests spread over both replicas, ``concurrency`` at a time; their
    statuses. ``scrapes``: /metrics of both is read meanwhile, into this list."""
    statuses: list[int] = []
    todo = iter(range(n))
    body = {"model": "oa-list", "messages": PROMPT, "max_tokens": max_tokens}
    headers = {"Authorization": f"Bearer {secret}"}

    async def client(http: httpx.AsyncClient) -> None:
        for i in todo:
            replica = cluster.replicas[i % 2]
            resp = await http.post(f"{replica.url}/v1/chat/completions", json=body,
                                   headers=headers)
            statuses.append(resp.status_code)

    async def scraper(http: httpx.AsyncClient) -> None:
        while len(statuses) < n:
            for replica in cluster.replicas:
                resp = await http.get(f"{replica.url}/metrics", headers=cluster.admin)
                assert resp.status_code == 200
                scrapes.append(resp.text)
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=30) as http:
        tasks = [client(http) for _ in range(concurrency)]
        if scrapes is not None:
            tasks.append(scraper(http))
        await asyncio.gather(*tasks)
    return statuses


def test_an_rpm_limit_holds_across_both_replicas_and_metrics_equal_the_ledger(cluster):
    _, secret = new_key(cluster, "acme", rpm=60)
    scrapes: list[str] = []
    started = time.time()
    statuses = asyncio.run(_load(cluster, secret, 200, scrapes=scrapes))
    assert time.time() - started < 55  # all of it inside one minute: at most 60 admitted
    assert statuses.count(200) <= 60 and statuses.count(200) >= 56, statuses
    assert set(statuses) == {200, 429}
    assert scrapes  # /metrics answered during the load

    # Counters equal the ledger's totals, exactly (summed over both replicas).
    def compare():
        rows = all_usage(cluster.pg.url)
        metrics = [cluster.scrape(r) for r in cluster.replicas]

        def total(name: str) -> float:
            return sum(m.get(name, 0) for m in metrics)

        served = [r for r in rows if r.status != "refused"]
        return (total("modelmart_requests_total") == len(rows)
                and total("modelmart_input_tokens_total") == sum(r.input_tokens for r in rows)
                and total("modelmart_output_tokens_total") == sum(r.output_tokens for r in rows)
                and total("modelmart_revenue_picodollars_total") == sum(r.price_pico for r in rows)
                and total("modelmart_cost_picodollars_total") == sum(r.cost_pico for r in rows)
                and total("modelmart_request_duration_seconds_count") == len(served)
                and total("modelmart_refusals_total") == len(rows) - len(served))

    poll(compare, 10, 0.2, "the ledger's totals in /metrics")


def test_a_budget_holds_across_both_replicas_within_one_requests_worst_case(cluster):
    budget = Decimal("0.002")
    key_id, secret = new_key(cluster, "acme", budget_usd=str(budget), period="month")
    statuses = asyncio.run(_load(cluster, secret, 160))
    assert 402 in statuses and 200 in statuses
    # Then one at a time until refused: what is left is less than one worst case.
    client = openai.OpenAI(base_url=f"{cluster.replicas[1].url}/v1", api_key=secret,
                           max_retries=0)
    sent = len(statuses)
    while True:
        sent += 1
        try:
            client.chat.completions.create(model="oa-list", messages=PROMPT, max_tokens=16)
        except openai.APIStatusError as err:
            assert err.status_code == 402
            break
    # Every request has its ledger row (refusals too) once the writers have flushed.
    def key_rows():
        return [r for r in all_usage(cluster.pg.url) if r.key_id == key_id]

    rows = poll(lambda: len(key_rows()) == sent and key_rows(), 10, 0.2, "the rows")
    total = sum(r.price_pico for r in rows)
    budget_pico = int(budget * 10**12)
    # oa-list lists 2.00 / 8.00 USD per million tokens; 16 output tokens at most, and the
    # prompt's bound is a few tokens: a worst case well under 1,000 tokens' price.
    worst = 1000 * 2 * 10**6 + 16 * 8 * 10**6
    assert total <= budget_pico
    assert budget_pico - total < worst


def test_a_key_revoked_through_one_replica_is_refused_by_the_other_within_a_second(cluster):
    key_id, secret = new_key(cluster, "acme")
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"model": "oa-list", "messages": PROMPT, "max_tokens": 4}
    a, b = cluster.replicas
    poll(lambda: httpx.post(f"{b.url}/v1/chat/completions", json=body,
                            headers=headers).status_code == 200, 5, what="the new key on b")
    resp = httpx.delete(f"{a.url}/admin/v1/keys/{key_id}", headers=cluster.admin)
    assert resp.status_code == 200, resp.text
    revoked = time.monotonic()
    poll(lambda: httpx.post(f"{b.url}/v1/chat/completions", json=body,
                            headers=headers).status_code == 401, 5, 0.02, "401 on b")
    assert time.monotonic() - revoked < 1.0


def test_a_redis_outage_is_survived_loudly_and_recovered_from(cluster):
    """Redis stops: each replica serves its half of an rpm-20 key on its own counters,
    logs a warning, sets the metric and says degraded on /ready; Redis back: all of it
    shared again."""
    cluster.redis.stop()
    _, secret = new_key(cluster, "acme", rpm=20)
    statuses = asyncio.run(_load(cluster, secret, 60, concurrency=4))
    assert statuses.count(200) == 20 and set(statuses) == {200, 429}  # 10 on each
    for replica in cluster.replicas:
        ready = httpx.get(f"{replica.url}/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        assert ready.json()["checks"]["limits"].startswith("degraded: Redis unreachable")
        assert cluster.gauge(replica, "modelmart_limits_backend_degraded") == 1
        assert "rate limits and budgets fall back to this replica's own counters" in replica.log()
    # Per replica, not shared: a replica alone admits only its half.
    _, alone = new_key(cluster, "acme", rpm=20)
    one = cluster.replicas[0]
    codes = [httpx.post(f"{one.url}/v1/chat/completions", headers={"Authorization":
                        f"Bearer {alone}"}, json={"model": "oa-list", "messages": PROMPT,
                                                  "max_tokens": 4}).status_code
             for _ in range(15)]
    assert codes.count(200) == 10

    cluster.redis.start()
    for replica in cluster.replicas:
        poll(lambda: httpx.get(f"{replica.url}/ready").json()["status"] == "ready", 15, 0.1,
             "/ready after Redis returned")
        assert cluster.gauge(replica, "modelmart_limits_backend_degraded") == 0
        assert "reachable again" in replica.log()
    _, secret = new_key(cluster, "acme", rpm=20)
    statuses = asyncio.run(_load(cluster, secret, 60, concurrency=4))
    assert statuses.count(200) == 20  # shared again: 20 in all, wherever they land
