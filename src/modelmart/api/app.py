"""``create_app(settings)``: the ASGI application, built once, no module-level state."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import parse_qs, unquote

from modelmart.core.errors import GatewayError, InvalidRequest, NotFound
from modelmart.core.types import Usage
from modelmart.dialects import (
    anthropic_messages, bedrock_converse, gemini, openai_chat, openai_responses,
)
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
from .bedrock_routes import dispatch as bedrock_dispatch
from .embeddings import embedding_routes
from . import passthrough
from .admission import Admission
from .batches import Batches
from .count_tokens import count_tokens_routes
from .console import Console
from .metrics import Metrics
from .tracing import Tracing
from .http import Receive, Scope, Send, header, send_json
from .models import get_model, list_models
from .settings import Settings
from .surface import BedrockSurface, GeminiSurface, Surface, handle_chat

log = logging.getLogger("modelmart")

OPENAI_CHAT = Surface("openai", openai_chat, "chatcmpl-")
ANTHROPIC_MESSAGES = Surface("anthropic", anthropic_messages, "msg_")
# Its extras are Responses-API fields that no chat upstream knows: its own source name
# keeps them from being passed on.
BEDROCK_CONVERSE = BedrockSurface("bedrock", bedrock_converse, "")
OPENAI_RESPONSES = Surface("openai_responses", openai_responses, "resp_", echoes_request=True)
GEMINI = GeminiSurface("gemini", gemini, "")


# Split on the raw path before decoding: an ARN model id carries %2F.
_BEDROCK_PATH = re.compile(rb"/model/([^/]+)/(converse|converse-stream)")
_GEMINI_PATH = re.compile(rb"/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent)")


class App:
    """The gateway as an ASGI callable (served by ``modelmart.server``, or any ASGI server).
    Providers start in the lifespan startup."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = settings.load_catalog()
        passthrough.resolve(self.catalog)
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
        self.admission = Admission(self)
        self.metrics = Metrics(settings.metrics_dir)
        # Spans per request and upstream attempt, when asked for (api/tracing.py); else None.
        self.tracing = (Tracing(settings.tracer_provider) if settings.tracer_provider is not None
                        else Tracing.from_environment() if settings.tracing else None)
        self._metrics_server = None
        self.admin = AdminAPI(self)
        self.console = Console(self)
        self.batches = Batches(self)
        self.http = None
        self.store = None
        self.keys: KeyCache | None = None
        self.counters = None
        self.limiter: RateLimiter | None = None
        self.budgets: Budgets | None = None
        self.recorder: Recorder | None = None
        self.customer_limits: dict[int, tuple[int | None, int | None]] = {}
        self.background: set = set()
        self.corrections: set = set()  # counter corrections of settled requests, pending
        self._fallback = self._fallback_route
        self._routes = {
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("POST", "/chat/completions"): self._openai_chat,
            ("POST", "/v1/messages"): self._anthropic_messages,
            ("POST", "/v1/responses"): self._openai_responses,
            ("POST", "/responses"): self._openai_responses,
            ("GET", "/v1/models"): self._list_models,
            ("GET", "/models"): self._list_models,
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/ready"): self._ready,
            **embedding_routes(self),  # POST /v1/embeddings and /embeddings
            **self.batches.routes(),  # /v1/files, /v1/batches, /v1/messages/batches
            **count_tokens_routes(self),  # POST /v1/messages/count_tokens
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
        if any(e.gap_policy is not None for e in self.catalog.models.values()):
            # Routing by measured quality; numpy and scipy are loaded only when it is used.
            from modelmart.evals.quality import follow_quality
            self._watch(follow_quality(self.router.quality, self.store, self.catalog))
        self.counters = make_counters(settings.redis_url, settings.coordinator_socket,
                                      settings.redis_leases)
        if hasattr(self.counters, "start"):  # Redis: checked now, heartbeat, fallback
            await self.counters.start()
        self.limiter = RateLimiter(self.counters)
        self.budgets = Budgets(self.counters, self.store)
        writer = WriterClient(settings.ledger_socket) if settings.ledger_socket else None
        self.recorder = Recorder(self.store, settings.resolved_journal_dir(), writer=writer)
        await self.recorder.start()
        self.metrics.start()
        if settings.metrics_port:
            self._metrics_server = self._serve_metrics(settings.metrics_host,
                                                       settings.metrics_port)
        self.http = new_session()
        if self.tracing is not None:
            self.http = self.tracing.transport(self.http)
        for dep in self.catalog.deployments():
            provider = provider_class(dep.config.kind)(dep.config, self.http)
            await provider.start()
            self.providers[dep.name] = provider
        await self.batches.start()
        log.info("modelmart ready: %d models, %d deployments",
                 len(self.catalog.models), len(self.providers))

    async def shutdown(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.should_exit = True
        await self.batches.close()
        for task in list(self.background):
            task.cancel()
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception:  # keep closing the others
                log.exception("closing a provider failed")
        if self.http is not None:
            await self.http.close()
        await self.metrics.close()
        if self.tracing is not None:
            await self.tracing.close()
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

    async def counters_settled(self, timeout: float = 5.0) -> None:
        """Wait until the counter corrections of requests answered so far have run: a
        budget then holds what was billed, not a released reservation."""
        pending = [t for t in self.corrections if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

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
            handler = self._routes.get((scope["method"], scope["path"]), self._fallback)
            if self.tracing is None:
                await handler(scope, receive, send)
            else:
                await self.tracing.serve(handler, scope, receive, send)
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

    async def _gemini(self, scope: Scope, receive: Receive, send: Send, match) -> None:
        params = {"model_id": unquote(match.group(1).decode("latin-1")),
                  "action": match.group(2).decode()}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if params["action"] == "streamGenerateContent" and query.get("alt") != ["sse"]:
            status, body = gemini.encode_error(InvalidRequest(
                "streamGenerateContent is served as server-sent events only: add ?alt=sse "
                "(the google-genai SDK does).", param="alt"))
            await send_json(send, status, body)
            return
        if "key" in query and not header(scope, b"x-goog-api-key"):
            # The key may come in the query string, as Google's REST examples send it.
            scope = {**scope, "headers": [*scope["headers"],
                                          (b"x-goog-api-key", query["key"][0].encode("latin-1"))]}
        await handle_chat(self, GEMINI, scope, receive, send, params)

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        """For load balancers and Kubernetes readiness probes. 503 ("not_ready") when no
        deployment is usable; 200 "degraded" when the replica serves without what other
        replicas share: Redis (its own limits instead) or the database (keys from memory,
        usage spooled to the journal): every replica is in the same state then, and taking
        them all out of the pool would turn a degraded service into an outage."""
        checks = {"store": await _check(self.store.change_counter()),
                  "limits": await _check(self.counters.get("mm:ready"))}
        if checks["store"] != "ok":
            checks["store"] = (f"degraded: {checks['store'].removeprefix('failing: ')}; keys "
                               f"from memory, {self.recorder.pending()} usage record(s) "
                               f"spooled in the journal")
        if getattr(self.counters, "degraded", False):
            checks["limits"] = (f"degraded: Redis unreachable for {self.counters.down_for():.0f} "
                                f"s ({self.counters.last_error}); per-replica limits")
        states = [h["state"] for h in self.router.health().values()]
        usable = sum(1 for s in states if s in ("healthy", "half_open"))
        checks["deployments"] = (f"ok: {usable} of {len(states)} usable" if usable
                                 else "failing: no deployment is usable")
        if any(v.startswith("failing") for v in checks.values()):
            status = "not_ready"
        else:
            status = "degraded" if any(v.startswith("degraded") for v in checks.values()) else "ready"
        await send_json(send, 503 if status == "not_ready" else 200,
                        {"status": status, "checks": checks})

    def _serve_metrics(self, host: str, port: int):
        """/metrics without the admin key on a port of its own (every worker listens on it
        with SO_REUSEPORT; each answers for all)."""
        from modelmart.server import Server

        async def metrics_only(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            if scope["path"] == "/metrics" and scope["method"] == "GET":
                await self._metrics(scope, receive, send, auth=False)
            else:
                await send_json(send, 404, {"error": "only GET /metrics here"})

        server = Server(metrics_only, host, port, reuse_port=True, lifespan=False,
                        handle_signals=False)
        self._watch(server.serve())
        return server

    async def _metrics(self, scope: Scope, receive: Receive, send: Send,
                       auth: bool = True) -> None:
        if auth and self.settings.metrics_auth:
            try:
                self.admin.authenticate(scope)
            except GatewayError as err:
                status, body = openai_chat.encode_error(err)
                await send_json(send, status, body)
                return
        extra = {"modelmart_ledger_backlog_records":
                 float(self.recorder.pending()) if self.recorder else 0.0,
                 "modelmart_requests_in_flight": float(self.metrics.in_flight),
                 "modelmart_streams_open": float(self.metrics.streams_open),
                 "modelmart_limits_backend_degraded":
                 1.0 if getattr(self.counters, "degraded", False) else 0.0}
        replicas = getattr(getattr(self.counters, "primary", None), "replicas", None)
        if replicas is not None:
            extra["modelmart_limits_replicas"] = float(replicas)
        data, content_type = self.metrics.exposition(self.router.health(), extra)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode())]})
        await send({"type": "http.response.body", "body": data})

    async def _fallback_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/console" or path.startswith("/console/"):
            return await self.console(scope, receive, send)
        if path.startswith("/admin"):
            await self.admin(scope, receive, send)
            return
        if self.batches.owns(path):
            return await self.batches(scope, receive, send)
        if method == "POST" and path.startswith("/model/"):
            match = _BEDROCK_PATH.fullmatch(scope.get("raw_path") or path.encode())
            if match is not None:
                params = {"model_id": unquote(match.group(1).decode("latin-1")),
                          "action": match.group(2).decode()}
                await handle_chat(self, BEDROCK_CONVERSE, scope, receive, send, params)
                return
        if method == "POST" and ":" in path:
            match = _GEMINI_PATH.fullmatch(scope.get("raw_path") or path.encode())
            if match is not None:
                await self._gemini(scope, receive, send, match)
                return
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix) and method == "GET":
                await get_model(self, path[len(prefix):], scope, receive, send)
                return
        if await bedrock_dispatch(self, scope, receive, send):  # InvokeModel, the control plane
            return
        dialect = anthropic_messages if header(scope, b"anthropic-version") else openai_chat
        known = any(p == path for _, p in self._routes)
        err: GatewayError = NotFound(f"No route for {method} {path}.")
        if path.startswith("/v1/v1/"):
            # The Anthropic SDK appends /v1 itself: a base_url ending in /v1 doubles it.
            err = NotFound(f"No route for {method} {path}: the client's base URL ends in /v1 "
                           f"and the SDK adds /v1 itself; set the base URL to the server's "
                           f"address without /v1 (the OpenAI SDK's base URL does end in /v1).")
        if known:
            err = GatewayError(f"Method {method} is not allowed for {path}.", status=405)
            err.kind = "invalid_request"
        status, body = dialect.encode_error(err)
        await send_json(send, status, body)


async def _check(probe, timeout: float = 2.0) -> str:
    try:
        await asyncio.wait_for(probe, timeout)
        return "ok"
    except Exception as exc:  # what is down, for the operator; never a traceback
        return f"failing: {type(exc).__name__}"


def create_app(settings: Settings | None = None) -> App:
    return App(settings or Settings())


def app_from_env() -> App:
    """The app of one ``serve --workers N`` worker (``modelmart.server``): settings from the env."""
    return create_app(Settings.from_env())
