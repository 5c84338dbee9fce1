"""The retry policy: which failures are worth another attempt, and how long to wait first."""

from __future__ import annotations

import random

from modelmart.catalog import Deployment, RetryPolicy
from modelmart.core.errors import GatewayError, UpstreamError, is_retryable

__all__ = ["is_retryable", "is_credentials_error", "backoff", "retry_delay",
           "credentials_failure"]


def is_credentials_error(err: GatewayError) -> bool:
    """An upstream 401/403 means the gateway's key for it is wrong: the operator's problem,
    never the client's."""
    return err.status in (401, 403)


def backoff(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter before the ``retry``-th retry (1-based): uniform
    in [0, min(max, base·2^(retry-1))], so clients that failed together do not return
    together."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (retry - 1))
    return rng.uniform(0.0, ceiling)


def retry_delay(policy: RetryPolicy, err: GatewayError, retry: int, remaining: float,
                rng: random.Random) -> float | None:
    """Seconds to wait before retrying the same deployment, or None when it is not worth
    waiting (the wait would outlast the deadline): move on to the next deployment at once."""
    delay = backoff(policy, retry, rng)
    if err.retry_after is not None:
        # The upstream said when it will take us again; sooner is a wasted attempt.
        delay = max(delay, err.retry_after)
    return delay if delay < remaining else None


def credentials_failure(dep: Deployment, err: GatewayError) -> UpstreamError:
    """What the client sees when the last deployment refused the gateway's credentials: a
    502, not the upstream's 401, which would make the client doubt its own key."""
    # The upstream's own message stays in the server log: it may quote (part of) the key.
    return UpstreamError(
        f"The upstream of deployment '{dep.name}' rejected the gateway's credentials "
        f"(HTTP {err.status}). This is a gateway configuration problem, not a problem with "
        "your API key; please tell the gateway operator.")
