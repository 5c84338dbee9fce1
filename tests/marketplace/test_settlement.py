"""Issue #12: every admitted request, however it ends, settles exactly once — one ledger row,
its budget reservation released to what it really cost, its rate-limit ticket corrected.

A provider that fails with something other than a ``GatewayError`` (a bug of ours, or of a
library under it) at the start of a stream, in its middle, or in a plain completion used to
escape every settlement: no row, the reservation held forever, a plain-text 500."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx
import openai
import pytest

from modelmart.tenancy.budgets import budget_window
from tests.fakes.script import Reply
from tests.marketplace.helpers import M, all_usage, fresh_key, poll

MSG = [{"role": "user", "content": "hello"}]
DEPLOYMENT = "oa-list/openai-0"


class Bug(RuntimeError):
    pass


class Failing:
    """Wraps a deployment's provider; fails with ``Bug`` where told."""

    def __init__(self, inner, where: str) -> None:
        self.inner, self.where = inner, where

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def complete(self, request):
        if self.where == "complete":
            raise Bug("a bug in the provider")
        return await self.inner.complete(request)

    async def stream_batches(self, request):
        if self.where == "stream_start":
            raise Bug("a bug before the first event")
        batches = self.inner.stream_batches(request)
        try:
            async for batch in batches:
                yield batch
                if self.where == "mid_stream":  # after the first batch reached the client
                    raise Bug("a bug in the middle of the stream")
        finally:
            await batches.aclose()


@pytest.fixture
def failing(priced):
    original = priced.app.providers[DEPLOYMENT]

    def install(where: str) -> None:
        priced.app.providers[DEPLOYMENT] = Failing(original, where)

    yield install
    priced.app.providers[DEPLOYMENT] = original


def _in_server(gateway, coro):
    return asyncio.run_coroutine_threadsafe(coro, gateway.server.loop).result(5)


def _held(gateway, secret: str) -> int:
    """What the key's budget counter holds: spend plus reservations not yet settled."""
    key = gateway.app.keys.lookup(secret)
    window = budget_window(key.budget_period, time.time())
    return _in_server(gateway, gateway.app.counters.get(f"budget:{key.id}:{window.label}"))


def _rows(gateway, request_id: str) -> list:
    return [r for r in all_usage(gateway.database_url) if r.request_id == request_id]


def _settled(gateway, secret: str, request_id: str):
    """The request's one ledger row, once the key's budget counter equals what it billed."""
    def done():
        rows = _rows(gateway, request_id)
        return rows if rows and _held(gateway, secret) == sum(r.price_pico for r in rows) else None
    (row,) = poll(done, 3.0, 0.02, "one row and a settled reservation")
    return row


def _remaining_tokens(gateway, secret: str) -> int:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="oa-list", max_tokens=5,
                                                           messages=MSG)
    return int(raw.headers["x-ratelimit-remaining-tokens"])


@pytest.mark.parametrize("where", ["stream_start", "mid_stream"])
def test_an_openai_stream_failing_with_a_bug_settles_once(priced, scripted, failing, where):
    secret = fresh_key(priced, budget_usd="1", period="day", tpm=100_000)
    failing(where)
    # One read per event, so the first batch is not the whole stream.
    scripted[0].queue(Reply(text="abcdefghijkl", chunk_size=2, output_tokens=6,
                            event_delay=0.02))
    client = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIError) as caught:
        with client.chat.completions.with_streaming_response.create(
                model="oa-list", max_tokens=50, messages=MSG, stream=True) as resp:
            request_id = resp.headers["x-request-id"]
            for _ in resp.parse():
                pass
    if where == "stream_start":  # nothing was sent: a JSON error in OpenAI's shape
        assert isinstance(caught.value, openai.InternalServerError)
        assert caught.value.body["message"].startswith("internal error")
        request_id = caught.value.response.headers["x-request-id"]
    row = _settled(priced, secret, request_id)
    assert row.status == "error" and row.http_status == 500
    if where == "mid_stream":  # billed for what was generated before the failure
        assert row.input_tokens > 0 and row.price_pico > 0
    # The ticket was corrected: only the probe's own bound (85 + 5) is counted now, besides
    # what the failed stream really used.
    used = row.input_tokens + row.output_tokens
    assert poll(lambda: _remaining_tokens(priced, secret) >= 100_000 - 90 - used - 90, 3.0)


def test_a_completion_failing_with_a_bug_settles_once(priced, scripted, failing):
    secret = fresh_key(priced, budget_usd="1", period="day")
    failing("complete")
    client = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="oa-list", max_tokens=50, messages=MSG)
    request_id = caught.value.response.headers["x-request-id"]
    row = _settled(priced, secret, request_id)
    assert (row.status, row.http_status, row.price_pico) == ("error", 500, 0)
    assert _held(priced, secret) == 0


def test_an_anthropic_stream_failing_with_a_bug_answers_in_its_dialect(priced, scripted, failing):
    secret = fresh_key(priced, budget_usd="1", period="day")
    failing("stream_start")
    client = anthropic.Anthropic(base_url=priced.url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as caught:
        with client.messages.stream(model="oa-list", max_tokens=50, messages=MSG) as stream:
            for _ in stream:
                pass
    assert caught.value.body["type"] == "error"
    row = _settled(priced, secret, caught.value.response.headers["x-request-id"])
    assert row.status == "error" and row.price_pico == 0


def test_a_client_gone_mid_stream_settles_once(priced, scripted):
    secret = fresh_key(priced, budget_usd="1", period="day")
    scripted[0].queue(Reply(text="x" * 400, chunk_size=2, event_delay=0.02, output_tokens=200))
    with httpx.stream("POST", f"{priced.url}/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {secret}"},
                      json={"model": "oa-list", "max_tokens": 500, "messages": MSG,
                            "stream": True}) as resp:
        request_id = resp.headers["x-request-id"]
        for _ in zip(range(3), resp.iter_bytes()):
            pass
    row = _settled(priced, secret, request_id)
    assert row.status == "client_disconnected" and row.price_pico > 0


def test_an_unbounded_request_carries_the_cap_its_reservation_assumed(priced, scripted):
    """The reservation assumes the model's max_output_tokens when a client sends no cap; the
    upstream must be told the same cap, or it may generate (and bill) far more."""
    fake_openai, fake_anthropic = scripted
    client = openai.OpenAI(base_url=f"{priced.url}/v1", api_key=priced.key, max_retries=0)
    client.chat.completions.create(model="oa-list", messages=MSG)
    client.chat.completions.create(model="an-list", messages=MSG)
    entry = priced.app.catalog.get("oa-list")
    assert fake_openai.received[-1].body["max_tokens"] == entry.max_output_tokens
    assert fake_anthropic.received[-1].body["max_tokens"] == entry.max_output_tokens
    # The bundled model's cap is its provider's own default.
    from modelmart.catalog.loader import bundled_entry
    assert bundled_entry().max_output_tokens == 256


def test_budget_holds_when_clients_send_no_max_tokens(greedy):
    """A $0.10 day budget, ten concurrent requests without max_tokens, an upstream that
    generates until it is stopped: the spend never passes the budget."""
    gateway, upstream = greedy
    secret = fresh_key(gateway, budget_usd="0.10", period="day")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0,
                           timeout=30)

    def ask(_):
        try:
            client.chat.completions.create(model="greedy", messages=MSG)
            return True
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            return False

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(10) as pool:
        admitted = sum(pool.map(ask, range(10)))
    assert admitted >= 1
    assert all(cap == 2000 for cap in upstream.caps)  # the model's max_output_tokens
    rows = poll(lambda: [r for r in all_usage(gateway.database_url)
                         if r.model == "greedy" and r.status == "ok"] or None, 3.0)
    assert len(rows) == admitted
    spent = sum(r.price_pico for r in rows)
    assert spent <= 10**11  # $0.10
    assert spent == admitted * (upstream.prompt_tokens * 1 * M + 2000 * 10 * M)


class _Greedy:
    """An OpenAI-compatible upstream that generates until ``max_tokens`` stops it (100,000
    tokens when nothing does), and bills what it generated."""

    prompt_tokens = 20

    def __init__(self) -> None:
        from aiohttp import web

        from tests.fakes.script import FakeServer

        self.caps: list = []
        outer = self

        class Server(FakeServer):
            def build_app(self):
                app = web.Application()
                app.router.add_post("/v1/chat/completions", outer.handle)
                return app

        self.server = Server()

    async def handle(self, request):
        from aiohttp import web

        body = await request.json()
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        self.caps.append(cap)
        generated = min(cap or 100_000, 100_000)
        return web.json_response({
            "id": "chatcmpl-greedy", "object": "chat.completion", "created": int(time.time()),
            "model": "greedy-1", "choices": [{"index": 0, "finish_reason": "length",
                                              "message": {"role": "assistant", "content": "x"}}],
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": generated,
                      "total_tokens": self.prompt_tokens + generated}})


@pytest.fixture(scope="module")
def greedy():
    from tests.harness import GatewayServer

    upstream = _Greedy()
    upstream.server.start()
    catalog = {"bundled_model": False, "models": {"greedy": {
        "provider": "openai-compatible", "model": "greedy-1",
        "base_url": f"{upstream.server.base_url}/v1", "api_key": "sk-upstream",
        "max_output_tokens": 2000,
        "cost": {"input": "1", "output": "10", "cache_read": "1", "cache_write": "1"},
        "price": {"input": "1", "output": "10", "cache_read": "1", "cache_write": "1"}}}}
    gateway = GatewayServer(catalog).start()
    yield gateway, upstream
    gateway.stop()
    upstream.server.stop()


@pytest.fixture(scope="module")
def priced_local():
    from tests.harness import GatewayServer

    rates = {"input": "1000", "output": "1000", "cache_read": "1000", "cache_write": "1000"}
    catalog = {"bundled_model": False, "models": {"smol-priced": {
        "provider": "local", "cost": rates, "price": rates}}}
    gateway = GatewayServer(catalog).start()
    yield gateway
    gateway.stop()


def test_the_bundled_models_chat_template_is_reserved_for(priced_local):
    """SmolLM2's template turns "hi" into 31 prompt tokens; a reservation of ~5 let a $0.18
    budget end at $0.195. At $1,000 per million tokens, "hi" with max_tokens 8 costs at
    most $0.039: the budget must hold however many requests are made one after another."""
    gateway = priced_local
    secret = fresh_key(gateway, budget_usd="0.18", period="day")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0,
                           timeout=60)
    for _ in range(8):
        try:
            client.chat.completions.create(model="smol-priced", max_tokens=8,
                                           messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            break
        poll(lambda: _held(gateway, secret) == sum(
            r.price_pico for r in all_usage(gateway.database_url)), 3.0)
    rows = all_usage(gateway.database_url)
    assert rows and all(r.input_tokens > 20 for r in rows if r.status == "ok")
    assert sum(r.price_pico for r in rows) <= 18 * 10**10
