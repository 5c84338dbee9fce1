"""How the runner reaches models: through the gateway's own pipeline, never around it.

``InProcessGateway`` builds the ASGI app (``create_app``), runs its lifespan and calls it
in-process through ``httpx.ASGITransport`` with the OpenAI SDK and an evaluation key, so
every item is authenticated, admitted, routed, metered and journaled like any call.
``RemoteGateway`` does the same against a running server (``--server URL --api-key KEY``)
that shares the database. Either way an item's tokens, cost and latency are read from the
ledger row of its request id (``x-request-id``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import openai

from modelmart.store.base import Store
from modelmart.store.records import UsageRecord

from .task import Generation, InfraError

EVAL_CUSTOMER = "eval"


class BudgetRefused(Exception):
    """The gateway refused a call for the key's budget (402): the run stops."""


@dataclass(slots=True)
class Caller:
    """``Generate`` for one model, through an OpenAI SDK client."""

    client: openai.AsyncOpenAI
    model: str
    timeout_s: float = 600.0

    async def __call__(self, messages: list[dict], *, max_tokens: int,
                       temperature: float | None = None) -> Generation:
        extra = {} if temperature is None else {"temperature": temperature}
        try:
            raw = await self.client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, max_tokens=max_tokens,
                timeout=self.timeout_s, **extra)
        except openai.APITimeoutError as exc:
            raise InfraError("timeout", str(exc)) from None
        except openai.APIConnectionError as exc:
            raise InfraError("connection", str(exc)) from None
        except openai.APIStatusError as exc:
            rid = exc.response.headers.get("x-request-id")
            if exc.status_code == 402:
                raise BudgetRefused(exc.message) from None
            if exc.status_code == 429:
                raise InfraError("rate_limited", exc.message, rid) from None
            if exc.status_code >= 500:
                raise InfraError("server_error", f"{exc.status_code}: {exc.message}", rid) from None
            # Another 4xx (a prompt over the context window, a refused parameter): not a
            # wrong answer and not worth retrying.
            raise InfraError(f"refused_{exc.status_code}", exc.message, rid) from None
        completion = raw.parse()
        choice = completion.choices[0]
        return Generation(text=choice.message.content or "",
                          request_id=raw.headers.get("x-request-id"),
                          finish_reason=choice.finish_reason)


class Gateway:
    """What the runner needs: a caller per model, the store, ledger rows, worst cases."""

    store: Store
    client: openai.AsyncOpenAI
    pricing = None  # metering.pricing.Pricing, for worst cases
    catalog = None
    key_id: int | None = None

    def caller(self, model: str) -> Caller:
        return Caller(self.client, model)

    def worst_case_pico(self, model: str, input_tokens: int, max_tokens: int) -> int:
        """The most this call could be billed: the dearest deployment's price."""
        entry = self.catalog.get(model)
        return self.pricing.worst_case(entry, input_tokens, max_tokens, time.time())

    def check_model(self, model: str) -> None:
        """Raises (a 4xx GatewayError) for an unknown or unpriced model, before any call."""
        self.pricing.check(self.catalog.get(model))

    async def counters_settled(self) -> None:
        """Wait until the gateway has replaced answered requests' budget reservations by
        their prices (a remote server's own budget check stays the backstop there)."""

    async def usage(self, request_id: str, wait_s: float = 30.0) -> UsageRecord | None:
        """The ledger row of a request: written in batches a moment after the response."""
        await self.counters_settled()
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            row = await self.store.get_usage(request_id)
            if row is not None or time.monotonic() > deadline:
                return row
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)


async def _eval_key(store: Store, budget_pico: int | None, label: str) -> tuple[int, str]:
    """A fresh key of the evaluation customer (made on demand); its budget, when given, is
    the run's remaining budget, so the gateway itself refuses to overspend too."""
    from modelmart.core.money import format_usd
    from modelmart.tenancy import accounts

    if await store.get_customer(EVAL_CUSTOMER) is None:
        try:
            await accounts.create_customer(store, EVAL_CUSTOMER)
        except Exception:  # made by a concurrent run meanwhile
            if await store.get_customer(EVAL_CUSTOMER) is None:
                raise
    budget = format_usd(max(budget_pico, 1), 12) if budget_pico is not None else None
    key, secret = await accounts.create_key(store, EVAL_CUSTOMER, name=label,
                                            budget_usd=budget,
                                            period="total" if budget else None)
    return key.id, secret


class InProcessGateway(Gateway):
    def __init__(self, settings) -> None:
        from modelmart.api.app import create_app

        self.app = create_app(settings)
        self.catalog = self.app.catalog
        self.pricing = self.app.pricing
        self._lifespan: asyncio.Task | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._outbox: asyncio.Queue = asyncio.Queue()

    async def start(self) -> None:
        self._lifespan = asyncio.ensure_future(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}},
                     self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the gateway did not start: {message.get('message')}")
        self.store = self.app.store

    async def counters_settled(self) -> None:
        # before the runner counts a price as its own, the eval key's budget no longer
        # holds the request's reservation: the gateway never refuses what the runner admits
        await self.app.counters_settled()

    async def issue_key(self, budget_pico: int | None, label: str) -> int:
        """A key of the evaluation customer for this invocation (revoked at close)."""
        self.key_id, secret = await _eval_key(self.store, budget_pico, label)
        await self.app.keys.reload()
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                       base_url="http://modelmart.eval", timeout=None)
        self.client = openai.AsyncOpenAI(base_url="http://modelmart.eval/v1", api_key=secret,
                                         http_client=self._http, max_retries=0)
        return self.key_id

    async def close(self) -> None:
        from modelmart.tenancy import accounts

        if self.key_id is not None:
            try:
                await accounts.revoke_key(self.store, str(self.key_id))
            except Exception:
                pass
        if getattr(self, "_http", None) is not None:
            await self._http.aclose()
        if self._lifespan is not None:
            await self._inbox.put({"type": "lifespan.shutdown"})
            await self._outbox.get()
            await self._lifespan


class RemoteGateway(Gateway):
    """A running server that writes its ledger to ``store`` (the same database)."""

    def __init__(self, url: str, api_key: str, store: Store, settings) -> None:
        from modelmart.api.app import create_app

        app = create_app(settings)  # not started: only its catalog and prices are used
        self.catalog, self.pricing, self.store = app.catalog, app.pricing, store
        self._secret = api_key
        self._http = httpx.AsyncClient(timeout=None)
        self.client = openai.AsyncOpenAI(base_url=url.rstrip("/") + "/v1", api_key=api_key,
                                         http_client=self._http, max_retries=0)

    async def start(self) -> None:
        return None

    async def issue_key(self, budget_pico: int | None, label: str) -> int | None:
        """The given key's id, found by its hash, so the run's spend can be read from the
        ledger (the server enforces that key's own budget)."""
        from modelmart.tenancy.keys import hash_secret

        digest = hash_secret(self._secret)
        for key in await self.store.list_keys():
            if key.secret_hash == digest:
                self.key_id = key.id
                return key.id
        raise ValueError("--api-key is not an active key in this database: the runner reads "
                         "each item's cost from the server's ledger, so give --database too")

    async def close(self) -> None:
        await self._http.aclose()
