"""``create_app(settings)``: the ASGI application, built once, no module-level state."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import unquote

from modelmart.core.errors import GatewayError, NotFound
from modelmart.core.types import Usage
from modelmart.dialects import anthropic_messages, bedrock_converse, openai_chat, openai_responses
from modelmart.metering.prices import PriceBook
from modelmart.metering.pricing import Pricing
from modelmart.metering.recorder import Recorder
from modelmart.metering.writer import WriterClient
from modelmart.providers.base import Provider
from modelmart.providers.http import new_session
from modelmart.providers.registry import provider_class
from modelmart.routing import Router
from modelmart.store.base import open_store
from modelmart.tenancy.budgets import Budgets
from modelmart.tenancy.counters import make_counters
from modelmart.tenancy.keys import KeyCache
from modelmart.tenancy.limits import RateLimiter

from .admin import AdminAPI
from .embeddings import embedding_routes
from .guard import Guard
from .http import Receive, Scope, Send, header, send_json
from .models import get_model, list_models
from .settings import Settings
from .surface import BedrockSurface, Surface, handle_chat

log = logging.getLogger("modelmart")

OPENAI_CHAT = Surface("openai", openai_chat, "chatcmpl-", text_runs=True)
ANTHROPIC_MESSAGES = Surface("anthropic", anthropic_messages, "msg_")
# Its extras are Responses-API fields that no chat upstream knows: its own source name
# keeps them from being passed on.
BEDROCK_CONVERSE = BedrockSurface("bedrock", bedrock_converse, "")
OPENAI_RESPONSES = Surface("openai_responses", openai_responses, "resp_", echoes_request=True)


# Split on the raw path before decoding: an ARN model id carries %2F.
_BEDROCK_PATH = re.compile(rb"/model/([^/]+)/(converse|converse-stream)")


class App:
    """The gateway as an ASGI callable (served by ``modelmart.server``, or any ASGI server).
    Providers start in the lifespan startup."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = settings.load_catalog()
        created = int(time.time())
        for entry in self.catalog.models.values():
            entry.created = entry.created or created
        self.providers: dict[str, Provider] = {}
        self.pricing = Pricing(
            self.catalog, PriceBook.load(overrides=self.catalog.cost_overrides or None),
            model_prices={m.id: m.price for m in self.catalog.models.values() if m.price},
            deployment_costs={d.name: d.cost for d in self.catalog.deployments() if d.cost},
            default_markup=self.catalog.default_markup)
        self.router = Router(self.catalog, self.providers, cost_of=self._routing_cost)
        self.guard = Guard(self)
        self.admin = AdminAPI(self)
        self.http = None
        self.store = None
        self.keys: KeyCache | None = None
        self.counters = None
        self.limiter: RateLimiter | None = None
        self.budgets: Budgets | None = None
        self.recorder: Recorder | None = None
        self.customer_limits: dict[int, tuple[int | None, int | None]] = {}
        self.background: set = set()
        self._routes = {
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("POST", "/chat/completions"): self._openai_chat,
            ("POST", "/v1/messages"): self._anthropic_messages,
            ("POST", "/v1/responses"): self._openai_responses,
            ("POST", "/responses"): self._openai_responses,
            ("GET", "/v1/models"): self._list_models,
            ("GET", "/models"): self._list_models,
            ("GET", "/health"): self._health,
            **embedding_routes(self),  # POST /v1/embeddings and /embeddings
        }

    def _routing_cost(self, dep, input_tokens: int, output_tokens: int) -> int | None:
        """A deployment's provider cost for a request of this size (lowest-cost routing)."""
        rates = self.pricing.deployment_cost(dep, time.time())
        if rates is None:
            return None
        return rates.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens))

    # ---- lifecycle ------------------------------------------------------------------
    async def startup(self) -> None:
        for model_id in self.pricing.unpriced():
            log.warning("model %s has no price: requests for it will be refused", model_id)
        settings = self.settings
        self.store = await open_store(settings.database_url)
        self.keys = KeyCache(self.store, poll_interval=settings.key_poll_interval)
        await self.keys.start()
        await self.refresh_customers()
        self._watch(self._follow_customers())
        self.counters = make_counters(settings.redis_url, settings.coordinator_socket)
        self.limiter = RateLimiter(self.counters)
        self.budgets = Budgets(self.counters, self.store)
        writer = WriterClient(settings.ledger_socket) if settings.ledger_socket else None
        self.recorder = Recorder(self.store, settings.resolved_journal_dir(), writer=writer)
        await self.recorder.start()
        self.http = new_session()
        for dep in self.catalog.deployments():
            provider = provider_class(dep.config.kind)(dep.config, self.http)
            await provider.start()
            self.providers[dep.name] = provider
        log.info("modelmart ready: %d models, %d deployments",
                 len(self.catalog.models), len(self.providers))

    async def shutdown(self) -> None:
        for task in list(self.background):
            task.cancel()
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception:  # keep closing the others
                log.exception("closing a provider failed")
        if self.http is not None:
            await self.http.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self.keys is not None:
            await self.keys.close()
        if self.limiter is not None:
            try:
                await self.limiter.close()  # unused leases go back while the counters are up
            except Exception:
                log.exception("giving back rate-limit leases failed")
        if self.counters is not None:
            await self.counters.close()
        if self.store is not None:
            await self.store.close()

    def _watch(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _follow_customers(self) -> None:
        """Customer limits change with the same counter as keys: reload them together."""
        seen = self.keys.version
        while True:
            await asyncio.sleep(self.settings.key_poll_interval)
            if self.keys.version != seen:
                seen = self.keys.version
                try:
                    await self.refresh_customers()
                except Exception:
                    log.exception("reloading customer limits failed")

    async def refresh_customers(self) -> None:
        self.customer_limits = {c.id: (c.rpm, c.tpm) for c in await self.store.list_customers()
                                if c.rpm or c.tpm}

    # ---- ASGI -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
            else:
                await self._fallback_route(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _openai_chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await handle_chat(self, OPENAI_CHAT, scope, receive, send)

    async def _anthropic_messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        await handle_chat(self, ANTHROPIC_MESSAGES, scope, receive, send)

    async def _openai_responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        await handle_chat(self, OPENAI_RESPONSES, scope, receive, send)

    async def _list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await list_models(self, scope, receive, send)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "ok", "models": len(self.catalog.models)})

    async def _fallback_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path.startswith("/admin"):
            await self.admin(scope, receive, send)
            return
        if method == "POST" and path.startswith("/model/"):
            match = _BEDROCK_PATH.fullmatch(scope.get("raw_path") or path.encode())
            if match is not None:
                params = {"model_id": unquote(match.group(1).decode("latin-1")),
                          "action": match.group(2).decode()}
                await handle_chat(self, BEDROCK_CONVERSE, scope, receive, send, params)
                return
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix) and method == "GET":
                await get_model(self, path[len(prefix):], scope, receive, send)
                return
        dialect = anthropic_messages if header(scope, b"anthropic-version") else openai_chat
        known = any(p == path for _, p in self._routes)
        err: GatewayError = NotFound(f"No route for {method} {path}.")
        if known:
            err = GatewayError(f"Method {method} is not allowed for {path}.", status=405)
            err.kind = "invalid_request"
        status, body = dialect.encode_error(err)
        await send_json(send, status, body)


def create_app(settings: Settings | None = None) -> App:
    return App(settings or Settings())


def app_from_env() -> App:
    """The app of one ``serve --workers N`` worker (``modelmart.server``): settings from the env."""
    return create_app(Settings.from_env())
