"""Catalog entries: a public model id and the ordered deployments that can serve it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from modelmart.core.errors import NotFound
from modelmart.providers.base import ProviderConfig


@dataclass(slots=True)
class Deployment:
    """One way to serve a model: a provider config plus routing attributes."""

    name: str  # unique across the catalog, e.g. "gpt-4o/openai-0"
    provider: str  # the preset name the operator wrote ("openai", "mistral", "local", ...)
    config: ProviderConfig
    weight: float = 1.0
    region: str | None = None
    # Provider cost override (USD per million tokens, one version or a list of versions);
    # None: the shipped price book by provider kind and upstream model.
    cost: dict | list | None = None
    # The fraction taken off this deployment's provider cost for requests of a batch: 0
    # (modelmart runs batches with ordinary requests), unless the upstream bills them
    # less (e.g. OpenAI's flex processing at batch rates).
    batch_cost_discount: Decimal = Decimal(0)


@dataclass(slots=True)
class RetryPolicy:
    """How hard the router tries for one request (the ``retries:`` key of a model)."""

    attempts: int = 2  # per deployment, the first attempt included
    max_attempts: int = 6  # over all deployments
    backoff_base: float = 0.5  # seconds; the n-th retry waits up to base * 2^(n-1) ...
    backoff_max: float = 8.0  # ... but never more than this (full jitter below it)
    deadline: float = 120.0  # seconds for the whole request, until the first byte


@dataclass(slots=True)
class CooldownPolicy:
    """When a failing deployment is set aside (the ``cooldown:`` key of a model)."""

    failures: int = 3  # consecutive failures that cool a deployment down
    seconds: float = 30.0  # how long it is skipped before one probe request


@dataclass(slots=True)
class ModelEntry:
    id: str
    deployments: list[Deployment]
    strategy: str = "fallback"
    owned_by: str = "modelmart"
    description: str | None = None
    created: int = 0
    # Customer price: list prices per million tokens (one version or a list), or
    # {"markup": "0.25"}; None: the catalog's default markup over cost.
    price: dict | list | None = None
    # Output cap assumed for budget reservations when a request sets no max_tokens.
    max_output_tokens: int = 4096
    # The fraction taken off the customer price for requests of a batch (api/batches).
    batch_discount: Decimal = Decimal("0.5")
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    cooldown: CooldownPolicy = field(default_factory=CooldownPolicy)
    # strategy cheapest-within-gap: routing.quality.GapPolicy (task, max_gap, candidates)
    gap_policy: object | None = None


@dataclass(slots=True)
class Catalog:
    models: dict[str, ModelEntry] = field(default_factory=dict)
    default_markup: str = "0"  # a decimal fraction: "0.2" sells at cost + 20%
    # Provider cost overrides on top of the shipped price book, "provider/model" → versions.
    cost_overrides: dict = field(default_factory=dict)

    def get(self, model_id: str) -> ModelEntry:
        entry = self.models.get(model_id)
        if entry is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(
                f"The model '{model_id}' does not exist in this gateway's catalog. "
                f"Available models: {known}.",
                param="model",
            )
        return entry

    def deployments(self) -> list[Deployment]:
        """Each deployment once (a cheapest-within-gap model shares its candidates')."""
        unique: dict[str, Deployment] = {}
        for m in self.models.values():
            for d in m.deployments:
                unique.setdefault(d.name, d)
        return list(unique.values())
