"""OpenTelemetry traces (api/tracing.py), caught by the SDK's in-memory exporter: a span per
request continuing the client's traceparent, a child span per upstream attempt whose id the
upstream receives as its traceparent, the request id on both, and no prompt, key or query
in any of them."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from tests.conftest import gateway_catalog
from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import poll

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
PROMPT = "the secret plan is under the mattress"


@pytest.fixture(scope="module")
def traced(fake_openai, fake_anthropic):
    exporter = InMemorySpanExporter()
    provider = otel_sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = GatewayServer(gateway_catalog(fake_openai, fake_anthropic),
                           tracer_provider=provider).start()
    yield server, exporter
    server.stop()


def finished(exporter, server_spans: int = 1) -> list:
    """The spans, once ``server_spans`` requests' spans have ended (a request's span ends
    just after its response's last byte has gone)."""
    return poll(lambda: (lambda spans: sum(s.kind == SpanKind.SERVER for s in spans)
                         >= server_spans and spans)(exporter.get_finished_spans()),
                2, 0.01, "the spans")


def _everything_said(spans) -> str:
    return " ".join(f"{s.name} {dict(s.attributes)} {[e.attributes for e in s.events]}"
                    for s in spans)


def test_a_request_continues_the_clients_trace_and_the_upstream_is_told(traced, fakes):
    server, exporter = traced
    fake_openai, _ = fakes
    exporter.clear()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0,
                           default_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": PROMPT}])
    rid = raw.headers["x-request-id"]
    spans = finished(exporter)
    server_span = next(s for s in spans if s.kind == SpanKind.SERVER)
    upstream = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert server_span.name == "POST /v1/chat/completions"
    assert format(server_span.context.trace_id, "032x") == CLIENT_TRACE
    assert format(server_span.parent.span_id, "016x") == CLIENT_SPAN
    assert server_span.attributes["http.response.status_code"] == 200
    assert server_span.attributes["modelmart.request_id"] == rid
    # The attempt: a child of the request's span, named by deployment, with the request id.
    assert upstream.parent.span_id == server_span.context.span_id
    assert upstream.context.trace_id == server_span.context.trace_id
    assert upstream.attributes["modelmart.request_id"] == rid
    assert upstream.attributes["modelmart.deployment"].startswith("gpt-fake")
    assert upstream.attributes["http.response.status_code"] == 200
    assert upstream.attributes["server.address"] == "127.0.0.1"
    # The upstream got a traceparent naming the attempt's span.
    sent = {k.lower(): v for k, v in fake_openai.received[-1].headers.items()}
    assert sent["traceparent"] == (f"00-{CLIENT_TRACE}-"
                                   f"{format(upstream.context.span_id, '016x')}-01")
    said = _everything_said(spans)
    assert PROMPT not in said and server.key not in said and "Bearer" not in said


def test_a_stream_without_traceparent_starts_a_trace_its_attempt_ends_with_the_stream(
        traced, fakes):
    server, exporter = traced
    fake_openai, _ = fakes
    exporter.clear()
    fake_openai.queue(Reply(text="one two three four", event_delay=0.01))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-fake", stream=True, messages=[{"role": "user", "content": PROMPT}])
        if c.choices)
    assert text == "one two three four"
    spans = finished(exporter)
    server_span = next(s for s in spans if s.kind == SpanKind.SERVER)
    upstream = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert server_span.parent is None
    assert upstream.parent.span_id == server_span.context.span_id
    assert upstream.end_time >= upstream.start_time + 3 * 10_000_000  # the events' delays
    assert PROMPT not in _everything_said(spans)


def test_span_names_hold_no_path_parameters_or_query(traced, fakes, caplog):
    server, exporter = traced
    exporter.clear()
    resp = httpx.post(f"{server.url}/v1beta/models/gpt-fake:generateContent?key=AIzaSECRET",
                      json={"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]})
    assert resp.status_code in (200, 401)
    httpx.get(f"{server.url}/no/such/path?token=abc")
    spans = finished(exporter, 2)
    names = [s.name for s in spans if s.kind == SpanKind.SERVER]
    assert names == ["POST /v1beta/models/{model}:generateContent", "GET other"]
    said = _everything_said(spans)
    assert "AIzaSECRET" not in said and "abc" not in said and PROMPT not in said


def test_log_lines_of_a_traced_request_carry_its_trace_id(traced, fakes, caplog):
    from modelmart.api.logs import stamp_records

    stamp_records()
    server, exporter = traced
    fake_openai, _ = fakes
    exporter.clear()
    caplog.set_level(logging.WARNING)
    # The upstream rejects the gateway's key: a warning, logged while the request is served
    # (this module's gateway is done with that deployment after this, its last test).
    fake_openai.queue(Reply(error_status=401, error_message="bad key"))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0,
                           default_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-fake",
                                       messages=[{"role": "user", "content": "x"}])
    traced_lines = [r for r in caplog.records if getattr(r, "request_id", None)]
    assert traced_lines, [r.getMessage() for r in caplog.records]
    assert {getattr(r, "trace_id", None) for r in traced_lines} == {CLIENT_TRACE}
