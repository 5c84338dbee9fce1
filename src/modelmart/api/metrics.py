"""Prometheus metrics: what was served, billed and refused, how fast, and the state of every
deployment, in the text format of the ``prometheus-client`` library.

Why not its metric objects on the hot path: a labelled counter costs ~2 µs an increment and
a histogram ~4 µs an observation (10 µs in its multiprocess mode), and a request touches a
dozen; a gateway spends ~250 µs on a request in all. So each process adds into plain
dicts of integers (a dict lookup and a few additions a request) and the library's metric
families are built from them when ``/metrics`` is scraped. Integers keep money exact:
amounts are picodollars, as in the ledger, so a counter equals the ledger's sum to the
last picodollar (a float holds every integer up to 2^53 exactly: $9,007 per series).

Under ``serve --workers N`` each worker writes its figures to a file of its own in a
shared folder (``MODELMART_METRICS_DIR``) once a second and when it stops; the worker that
answers a scrape adds its own live figures to every other worker's file (those of workers
that died included, so counters never go down). The other workers' figures are then at
most a second old.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import glob
import logging
import os
from typing import Iterable

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from modelmart.store.records import UsageRecord

log = logging.getLogger("modelmart.metrics")

# Seconds; a request's latency and a stream's time to first token.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_USAGE_FIELDS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_write_tokens", "cost_picodollars", "revenue_picodollars")
_REFUSALS = {429: "rate_limit", 402: "budget", 401: "authentication", 403: "permission"}


class Figures:
    """One process's figures: plain dicts, merged across processes by ``add``."""

    def __init__(self) -> None:
        # (model, deployment, provider, customer, surface, status) -> _USAGE_FIELDS
        self.usage: dict[tuple, list[int]] = {}
        # (model, surface, stream) -> [count per bucket..., +Inf count, sum in µs]
        self.latency: dict[tuple, list[int]] = {}
        self.ttft: dict[tuple, list[int]] = {}  # (model,) -> the same
        self.refusals: dict[tuple, int] = {}  # (reason,) -> count
        self.attempts: dict[tuple, int] = {}  # (deployment,) -> upstream attempts

    def to_json(self) -> bytes:
        return orjson.dumps({name: [[list(k), v] for k, v in getattr(self, name).items()]
                             for name in ("usage", "latency", "ttft", "refusals", "attempts")})

    def add(self, other: "Figures") -> None:
        for name in ("usage", "latency", "ttft"):
            mine = getattr(self, name)
            for key, values in getattr(other, name).items():
                have = mine.get(key)
                if have is None:
                    mine[key] = list(values)
                else:
                    for i, v in enumerate(values):
                        have[i] += v
        for name in ("refusals", "attempts"):
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] = mine.get(key, 0) + value

    @classmethod
    def from_json(cls, data: bytes) -> "Figures":
        raw = orjson.loads(data)
        out = cls()
        for name in ("usage", "latency", "ttft", "refusals", "attempts"):
            setattr(out, name, {tuple(k): v for k, v in raw.get(name, [])})
        return out


def _observe(table: dict, key: tuple, seconds: float) -> None:
    counts = table.get(key)
    if counts is None:
        counts = table[key] = [0] * (len(BUCKETS) + 2)
    counts[bisect.bisect_left(BUCKETS, seconds)] += 1
    counts[-1] += round(seconds * 1e6)


class Metrics:
    """The app's metrics. ``record`` is called with every ledger record."""

    def __init__(self, directory: str | None = None) -> None:
        self.figures = Figures()
        self.directory = directory
        self.in_flight = 0
        self.streams_open = 0
        self._task: asyncio.Task | None = None

    # ---- the hot path -----------------------------------------------------------------
    def record(self, rec: UsageRecord, customer: str) -> None:
        f = self.figures
        key = (rec.model, rec.deployment or "", rec.provider or "", customer, rec.surface,
               rec.status)
        row = f.usage.get(key)
        if row is None:
            row = f.usage[key] = [0] * len(_USAGE_FIELDS)
        row[0] += 1
        row[1] += rec.input_tokens
        row[2] += rec.output_tokens
        row[3] += rec.cache_read_tokens
        row[4] += rec.cache_write_tokens
        row[5] += rec.cost_pico
        row[6] += rec.price_pico
        if rec.attempts and rec.deployment:
            f.attempts[(rec.deployment,)] = f.attempts.get((rec.deployment,), 0) + rec.attempts
        if rec.status == "refused":
            reason = (_REFUSALS.get(rec.http_status, "invalid_request"),)
            f.refusals[reason] = f.refusals.get(reason, 0) + 1
            return
        _observe(f.latency, (rec.model, rec.surface, "true" if rec.stream else "false"),
                 rec.latency_ms / 1000)
        if rec.ttft_ms is not None:
            _observe(f.ttft, (rec.model,), rec.ttft_ms / 1000)

    # ---- several workers --------------------------------------------------------------
    def start(self) -> None:
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
            self._task = asyncio.ensure_future(self._publish_every(1.0))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.publish()

    async def _publish_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                self.publish()
            except OSError as exc:
                log.warning("writing metrics for other workers failed: %s", exc)

    def _path(self) -> str:
        return os.path.join(self.directory, f"worker-{os.getpid()}.json")

    def publish(self) -> None:
        if not self.directory:
            return
        path = self._path()
        tmp = path + ".tmp"
        with open(tmp, "wb") as out:
            out.write(self.figures.to_json())
        os.replace(tmp, path)

    def everyone(self) -> Figures:
        """This process's live figures plus every other worker's last published ones."""
        total = Figures()
        total.add(self.figures)
        if self.directory:
            mine = self._path()
            for path in glob.glob(os.path.join(self.directory, "worker-*.json")):
                if path == mine:
                    continue
                try:
                    with open(path, "rb") as src:
                        total.add(Figures.from_json(src.read()))
                except (OSError, ValueError) as exc:  # a worker's file being replaced
                    log.debug("skipping metrics file %s: %s", path, exc)
        return total

    # ---- exposition -------------------------------------------------------------------
    def exposition(self, health: dict[str, dict], extra: dict[str, float]) -> tuple[bytes, str]:
        """The text format for a scrape, and its content type."""
        registry = _Collected(list(self._families(self.everyone(), health, extra)))
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def _families(self, f: Figures, health: dict[str, dict], extra: dict[str, float]):
        labels = ["model", "deployment", "provider", "customer", "surface", "status"]
        names = {
            "requests": ("modelmart_requests", "Requests answered, by outcome."),
            "input_tokens": ("modelmart_input_tokens", "Uncached input tokens billed."),
            "output_tokens": ("modelmart_output_tokens", "Output tokens billed."),
            "cache_read_tokens": ("modelmart_cache_read_tokens", "Cache-read tokens billed."),
            "cache_write_tokens": ("modelmart_cache_write_tokens", "Cache-write tokens billed."),
            "cost_picodollars": ("modelmart_cost_picodollars",
                                 "Provider cost, in picodollars (1e-12 USD)."),
            "revenue_picodollars": ("modelmart_revenue_picodollars",
                                    "Price billed to customers, in picodollars (1e-12 USD)."),
        }
        for i, field in enumerate(_USAGE_FIELDS):
            name, doc = names[field]
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, row in f.usage.items():
                family.add_metric(list(key), row[i])
            yield family
        margin = GaugeMetricFamily("modelmart_margin_picodollars",
                                   "Revenue minus provider cost, in picodollars.", labels=labels)
        for key, row in f.usage.items():
            margin.add_metric(list(key), row[6] - row[5])
        yield margin
        yield _histogram("modelmart_request_duration_seconds",
                         "Time from the request to its last byte.", ["model", "surface", "stream"],
                         f.latency)
        yield _histogram("modelmart_time_to_first_token_seconds",
                         "Time from the request to a stream's first token.", ["model"], f.ttft)
        yield _counter("modelmart_refusals", "Requests refused before any upstream call.",
                       ["reason"], f.refusals)
        yield _counter("modelmart_upstream_attempts",
                       "Upstream attempts made (retries and fallbacks included).",
                       ["deployment"], f.attempts)
        yield from _deployment_families(health)
        for name, value in extra.items():
            gauge = GaugeMetricFamily(name, name.replace("modelmart_", "").replace("_", " "))
            gauge.add_metric([], value)
            yield gauge


def _counter(name: str, doc: str, labels: list[str], table: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in table.items():
        family.add_metric(list(key), value)
    return family


def _histogram(name: str, doc: str, labels: list[str], table: dict) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, counts in table.items():
        running, buckets = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), counts[:-1]):
            running += count
            buckets.append((_bound(bound), running))
        family.add_metric(list(key), buckets, counts[-1] / 1e6)
    return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


_STATES = ("healthy", "cooling", "half_open", "credentials_rejected")


def _deployment_families(health: dict[str, dict]) -> Iterable:
    """Deployment health as this process sees it (the router keeps it per process)."""
    state = GaugeMetricFamily("modelmart_deployment_state",
                              "1 for the deployment's current state.",
                              labels=["deployment", "model", "state"])
    failures = GaugeMetricFamily("modelmart_deployment_consecutive_failures",
                                 "Consecutive failures of the deployment.",
                                 labels=["deployment", "model"])
    latency = GaugeMetricFamily("modelmart_deployment_latency_seconds",
                                "Moving average of the deployment's latency.",
                                labels=["deployment", "model"])
    cooldown = GaugeMetricFamily("modelmart_deployment_cooldown_seconds",
                                 "Seconds left before a cooling deployment is probed.",
                                 labels=["deployment", "model"])
    for name, report in health.items():
        model = str(report.get("model", ""))
        for s in _STATES:
            state.add_metric([name, model, s], 1.0 if report.get("state") == s else 0.0)
        failures.add_metric([name, model], float(report.get("consecutive_failures") or 0))
        if report.get("latency_ms") is not None:
            latency.add_metric([name, model], report["latency_ms"] / 1000)
        cooldown.add_metric([name, model], float(report.get("cooldown_remaining_s") or 0))
    return state, failures, latency, cooldown


class _Collected:
    """The registry interface ``generate_latest`` needs, over families built already."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)
