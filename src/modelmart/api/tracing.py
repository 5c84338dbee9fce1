"""Optional OpenTelemetry traces: a span per request and one per upstream attempt.

Off unless asked for (``MODELMART_TRACING=otlp``, or an ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` in the environment) and the ``otel`` extra is
installed (``pip install 'modelmart[otel]'``); spans then go to the OTLP/HTTP exporter,
configured by the standard ``OTEL_*`` variables (endpoint, headers, service name). Off, the
app holds ``None`` and the request path pays one attribute test.

- The request's span (kind SERVER) continues a client's W3C ``traceparent`` (and
  ``tracestate``); it is named by route (``POST /v1/chat/completions``; Bedrock and Gemini
  paths with ``{model}``), never by the raw path or query (a Gemini key may be in the query),
  and carries the method, route, status and ``modelmart.request_id``. Its trace id is on
  every log line of the request (``logs.TRACE_ID``).
- Each upstream attempt's span (kind CLIENT) is a child of it, from the request's head to
  the reply's end (a stream's last byte), with the deployment, the upstream host, status and
  request id; the upstream is sent a ``traceparent`` naming that span.

What spans never hold: prompts, completions, keys, header values, URLs' paths or queries.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from .http import Receive, Scope, Send
from .logs import REQUEST_ID, TRACE_ID

log = logging.getLogger("modelmart.tracing")

_STATIC_ROUTES = {"/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1/responses",
                  "/responses", "/v1/models", "/models", "/v1/embeddings", "/embeddings",
                  "/health", "/ready", "/metrics"}


def wanted(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    choice = (env.get("MODELMART_TRACING") or "").strip().lower()
    if choice in ("off", "0", "no", "false", "none"):
        return False
    return choice in ("otlp", "on", "1", "yes", "true") or bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def route_of(method: str, path: str) -> str:
    """A span name of low cardinality, without anything a client put in the path."""
    if path in _STATIC_ROUTES:
        return f"{method} {path}"
    if path.startswith("/model/"):
        return f"{method} /model/{{model}}/{path.rsplit('/', 1)[-1]}"
    if ":" in path and "/models/" in path:
        return f"{method} /v1beta/models/{{model}}:{path.rsplit(':', 1)[-1]}"
    if path.startswith("/admin"):
        return f"{method} /admin"
    if path.startswith("/console"):
        return f"{method} /console"
    return f"{method} other"


class Tracing:
    """Spans for one app, from a ``TracerProvider`` of its own (the OTel global one is
    left alone: tests run several apps in one process)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("modelmart")
        self.propagator = TraceContextTextMapPropagator()
        self._trace = trace

    @classmethod
    def from_environment(cls) -> "Tracing | None":
        if not wanted():
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("tracing was asked for, but OpenTelemetry is not installed: "
                        "pip install 'modelmart[otel]'; serving without traces")
            return None
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME")
                                    or "modelmart"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    # ---- the request's span -----------------------------------------------------------
    async def serve(self, handler, scope: Scope, receive: Receive, send: Send) -> None:
        carrier = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        parent = self.propagator.extract(carrier) if carrier else None
        method = scope["method"]
        seen: dict[str, Any] = {}

        async def watched(message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers") or ():
                    if name == b"x-request-id":
                        seen["rid"] = value.decode("latin-1")
            await send(message)

        route = route_of(method, scope["path"])
        kind = self._trace.SpanKind.SERVER
        with self.tracer.start_as_current_span(route, context=parent, kind=kind) as span:
            token = TRACE_ID.set(format(span.get_span_context().trace_id, "032x"))
            try:
                await handler(scope, receive, watched)
            finally:
                TRACE_ID.reset(token)
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route.split(" ", 1)[1])
                if "status" in seen:
                    span.set_attribute("http.response.status_code", seen["status"])
                    if seen["status"] >= 500:
                        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
                if "rid" in seen:
                    span.set_attribute("modelmart.request_id", seen["rid"])

    # ---- upstream attempts ------------------------------------------------------------
    def transport(self, inner) -> "TracedTransport":
        return TracedTransport(inner, self, None)

    async def close(self) -> None:
        import asyncio

        # Flushes what the batch processor holds; blocking, so off the event loop.
        await asyncio.get_running_loop().run_in_executor(None, self.provider.shutdown)


class TracedTransport:
    """A ``providers.transport.Transport`` whose requests are spans, with a ``traceparent``."""

    def __init__(self, inner, tracing: Tracing, deployment: str | None) -> None:
        self._inner, self._tracing, self._deployment = inner, tracing, deployment

    @property
    def loop(self):
        return self._inner.loop

    def for_config(self, cfg: Any) -> "TracedTransport":
        for_config = getattr(self._inner, "for_config", None)
        inner = for_config(cfg) if for_config is not None else self._inner
        return TracedTransport(inner, self._tracing, getattr(cfg, "name", None) or None)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def request(self, method: str, url: str, headers, body: bytes, **kwargs):
        tracing = self._tracing
        trace = tracing._trace
        span = tracing.tracer.start_span(f"upstream {method} {self._deployment or 'upstream'}",
                                         kind=trace.SpanKind.CLIENT)
        span.set_attribute("http.request.method", method)
        span.set_attribute("server.address", urlsplit(url).hostname or "")
        if self._deployment:
            span.set_attribute("modelmart.deployment", self._deployment)
        rid = REQUEST_ID.get()
        if rid:
            span.set_attribute("modelmart.request_id", rid)
        carrier: dict[str, str] = {}
        tracing.propagator.inject(carrier, context=trace.set_span_in_context(span))
        headers = _with_headers(headers, carrier)
        try:
            reply = await self._inner.request(method, url, headers, body, **kwargs)
        except BaseException as exc:
            if isinstance(exc, Exception):  # not a cancellation
                span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        span.set_attribute("http.response.status_code", reply.status)
        if reply.status >= 400:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        return _TracedReply(reply, span)


def _with_headers(headers, extra: dict[str, str]):
    if not extra:
        return headers
    if isinstance(headers, dict):
        return {**headers, **extra}
    return headers.with_headers(extra)  # an h1.HeaderBlock


class _TracedReply:
    """The upstream reply; its span ends when the reply is done with (its last byte)."""

    __slots__ = ("_reply", "_span")

    def __init__(self, reply, span) -> None:
        self._reply, self._span = reply, span

    def __getattr__(self, name: str):
        return getattr(self._reply, name)

    def _end(self) -> None:
        if self._span is not None:
            self._span.end()
            self._span = None

    def release(self) -> None:
        self._end()
        self._reply.release()

    def close(self) -> None:
        self._end()
        self._reply.close()
