"""Deployment health: consecutive failures cool a deployment down, one probe brings it back.

A deployment's life: ``healthy`` → (``cooldown.failures`` consecutive failures) → ``cooling``
for ``cooldown.seconds`` → ``half_open``: the next request is let through as a probe while
others keep skipping it → a success makes it ``healthy``, a failure cools it down again.
An upstream 401/403 puts it in ``credentials_rejected``: skipped and probed the same way,
but the state stays until a success, so the operator sees why.

State is per process and in memory: it is a routing hint, not a record. What it keeps and
logs of an upstream's error is scrubbed of credentials (``ProviderConfig.scrub``) first: the
admin API shows it, and an upstream may echo the gateway's key back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from modelmart.catalog import CooldownPolicy, Deployment
from modelmart.core.errors import GatewayError
from modelmart.core.redact import redact

log = logging.getLogger("modelmart.routing")

# Weight of the newest sample in the moving averages: recent enough to move away from a
# deployment that slowed down within a few requests, smooth enough to ignore one outlier.
EWMA_ALPHA = 0.3
# A probe whose outcome never came (its stream was dropped unread) stops blocking others.
PROBE_STALE_AFTER = 120.0


@dataclass(slots=True)
class DeploymentHealth:
    name: str
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    latency_ms: float | None = None  # moving average of whole successful attempts
    ttft_ms: float | None = None  # moving average of time to a stream's first event
    last_error: str | None = None
    last_failure_at: float | None = None
    # Clock time until which the deployment is skipped; None when it is not tripped.
    cooling_until: float | None = None
    credentials_rejected: bool = False
    probe_since: float | None = None

    def state(self, now: float) -> str:
        if self.credentials_rejected:
            return "credentials_rejected"
        if self.cooling_until is None:
            return "healthy"
        return "cooling" if now < self.cooling_until else "half_open"


def _ewma(old: float | None, sample: float) -> float:
    return sample if old is None else old + EWMA_ALPHA * (sample - old)


def _scrubbed(dep: Deployment, text: str) -> str:
    config = getattr(dep, "config", None)
    return config.scrub(text) if config is not None else redact(text)


class HealthBoard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_name: dict[str, DeploymentHealth] = {}

    def get(self, dep: Deployment | str) -> DeploymentHealth:
        name = dep if isinstance(dep, str) else dep.name
        health = self._by_name.get(name)
        if health is None:
            health = self._by_name[name] = DeploymentHealth(name)
        return health

    # ---- which deployments may be tried ----------------------------------------------

    def usable(self, dep: Deployment) -> bool:
        h, now = self.get(dep), self.clock()
        if h.cooling_until is None:
            return True
        if now < h.cooling_until:
            return False
        # Half-open: one probe at a time.
        return h.probe_since is None or now - h.probe_since > PROBE_STALE_AFTER

    def admit(self, ordered: list[Deployment]) -> list[Deployment]:
        """``ordered`` without the deployments set aside; when that leaves none, the one
        that failed longest ago, because trying a maybe-broken upstream beats refusing."""
        usable = [d for d in ordered if self.usable(d)]
        if usable or not ordered:
            return usable
        return [min(ordered, key=lambda d: self.get(d).last_failure_at or 0.0)]

    # ---- outcomes ---------------------------------------------------------------------

    def begin(self, dep: Deployment) -> None:
        h = self.get(dep)
        h.requests += 1
        if h.cooling_until is not None and self.clock() >= h.cooling_until:
            h.probe_since = self.clock()

    def succeeded(self, dep: Deployment, latency_ms: float | None = None) -> None:
        h = self.get(dep)
        if h.cooling_until is not None or h.credentials_rejected:
            log.info("deployment %s answered again; back in rotation", h.name)
        h.consecutive_failures = 0
        h.cooling_until = h.probe_since = None
        h.credentials_rejected = False
        if latency_ms is not None:
            h.latency_ms = _ewma(h.latency_ms, latency_ms)

    def first_event(self, dep: Deployment, ttft_ms: float) -> None:
        h = self.get(dep)
        h.ttft_ms = _ewma(h.ttft_ms, ttft_ms)

    def failed(self, dep: Deployment, err: GatewayError, cooldown: CooldownPolicy) -> None:
        h = self._note_failure(dep, err)
        if h.consecutive_failures >= cooldown.failures:
            if h.cooling_until is None:
                # The wire detail (its URL without userinfo, the socket error) is for the
                # operator only: clients and the ledger never see it.
                detail = getattr(err, "detail", None)
                log.warning("deployment %s failed %d times in a row (last: %s%s); skipping it "
                            "for %gs", h.name, h.consecutive_failures, h.last_error,
                            f" [{_scrubbed(dep, detail)}]" if detail else "", cooldown.seconds)
            h.cooling_until = self.clock() + cooldown.seconds

    def rejected(self, dep: Deployment, err: GatewayError, cooldown: CooldownPolicy) -> None:
        """The upstream refused the gateway's own credentials (401/403)."""
        h = self._note_failure(dep, err)
        if not h.credentials_rejected:
            log.warning("deployment %s: the upstream rejected the gateway's credentials "
                        "(HTTP %d: %s); check its api_key. Skipping it until it answers again.",
                        h.name, err.status, _scrubbed(dep, err.message)[:300])
        h.credentials_rejected = True
        h.cooling_until = self.clock() + cooldown.seconds

    def release(self, dep: Deployment) -> None:
        """The attempt ended without telling anything (cancelled): free the probe slot."""
        self.get(dep).probe_since = None

    def _note_failure(self, dep: Deployment, err: GatewayError) -> DeploymentHealth:
        h = self.get(dep)
        h.failures += 1
        h.consecutive_failures += 1
        h.last_error = _scrubbed(dep, f"{err.status}: {err.message}")[:300]
        h.last_failure_at = self.clock()
        h.probe_since = None
        return h

    def reset(self) -> None:
        """Forget everything: every deployment healthy and unmeasured (admin, tests)."""
        self._by_name.clear()

    # ---- reporting --------------------------------------------------------------------

    def report(self, dep: Deployment) -> dict:
        h, now = self.get(dep), self.clock()
        remaining = max(0.0, h.cooling_until - now) if h.cooling_until is not None else 0.0
        return {
            "deployment": h.name,
            "state": h.state(now),
            "consecutive_failures": h.consecutive_failures,
            "latency_ms": None if h.latency_ms is None else round(h.latency_ms, 1),
            "ttft_ms": None if h.ttft_ms is None else round(h.ttft_ms, 1),
            "requests": h.requests,
            "failures": h.failures,
            "last_error": h.last_error,
            "cooldown_remaining_s": round(remaining, 3),
        }
