"""The customer price of a request, and the provider cost behind it.

A model's price is either a list price (USD per million tokens, optionally versioned) or a
markup on the cost of whichever deployment served the request. A deployment's cost comes
from ``deployment_costs`` (negotiated rates, Azure, resellers) or else the price book.
A model whose price or any deployment's cost is unknown is refused, never served unbilled.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from modelmart.catalog import Catalog, Deployment, ModelEntry
from modelmart.catalog.loader import BUNDLED_MODEL_ID
from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Usage

from .prices import FREE, PriceBook, PriceError, PriceSchedule, TokenPrices, parse_schedule


class UnpricedModel(InvalidRequest):
    """400, not 5xx: retrying or falling back cannot help, and the client can pick another
    model. ``param`` is ``model``."""


def apply_markup(cost_pico: int, markup: Decimal) -> int:
    """cost × (1 + markup), rounded half-up to a whole picodollar, in exact integers."""
    num, den = (1 + markup).as_integer_ratio()
    return (2 * cost_pico * num + den) // (2 * den)


def _markup(value: Any, where: str) -> Decimal:
    try:
        markup = Decimal(str(value))
    except InvalidOperation:
        raise PriceError(f"{where}: {value!r} is not a number") from None
    if not markup.is_finite() or markup < -1:
        raise PriceError(f"{where}: a markup must be a number of at least -1 (got {value})")
    return markup


def _model_price(spec: Any, where: str) -> PriceSchedule | Decimal:
    if isinstance(spec, dict) and "markup" in spec:
        if len(spec) != 1:
            raise PriceError(f"{where}: give either 'markup' or list prices, not both")
        return _markup(spec["markup"], f"{where}.markup")
    return parse_schedule(spec, where)


class Pricing:
    def __init__(self, catalog: Catalog, price_book: PriceBook,
                 model_prices: dict[str, Any] | None = None,
                 deployment_costs: dict[str, Any] | None = None,
                 default_markup: Decimal | str | None = None) -> None:
        self.catalog = catalog
        self.book = price_book
        self._prices: dict[str, PriceSchedule | Decimal] = {}
        for model_id, spec in (model_prices or {}).items():
            if model_id not in catalog.models:
                raise PriceError(f"model_prices.{model_id}: no such model in the catalog")
            self._prices[model_id] = _model_price(spec, f"model_prices.{model_id}")
        # The bundled model runs on the operator's machine: explicitly free unless priced.
        if BUNDLED_MODEL_ID in catalog.models:
            self._prices.setdefault(BUNDLED_MODEL_ID, PriceSchedule.constant(FREE))
        known = {d.name for d in catalog.deployments()}
        self._costs: dict[str, PriceSchedule] = {}
        for name, spec in (deployment_costs or {}).items():
            if name not in known:
                raise PriceError(f"deployment_costs.{name}: no such deployment in the catalog")
            self._costs[name] = parse_schedule(spec, f"deployment_costs.{name}")
        self._schedules: dict[str, PriceSchedule | None] = {}
        self._priced_since: dict[str, float] = {}  # model id -> a moment it was fully priced
        self.default_markup = (None if default_markup is None
                               else _markup(default_markup, "default_markup"))

    # -- lookups -----------------------------------------------------------------------

    def cost_schedule(self, deployment: Deployment) -> PriceSchedule | None:
        # The catalog does not change while the app runs: look each deployment up once.
        try:
            return self._schedules[deployment.name]
        except KeyError:
            schedule = self._costs.get(deployment.name) or self.book.cost_schedule(
                deployment.provider, deployment.config.model)
            self._schedules[deployment.name] = schedule
            return schedule

    def price_rule(self, model_id: str) -> PriceSchedule | Decimal | None:
        """A model's customer price as configured: list-price versions, a markup over
        cost, or None (unpriced). For display (the console's catalog)."""
        return self._prices.get(model_id, self.default_markup)

    def deployment_cost(self, deployment: Deployment, at: float) -> TokenPrices | None:
        """Provider rates in force at ``at`` (for cost-aware routing), or None."""
        schedule = self.cost_schedule(deployment)
        return schedule.at(at) if schedule else None

    def _cost_rates(self, entry: ModelEntry, deployment: Deployment, at: float) -> TokenPrices:
        rates = self.deployment_cost(deployment, at)
        if rates is None:
            raise self._refusal(entry, f"deployment {deployment.name} has no provider cost for "
                                       f"{deployment.provider}/{deployment.config.model}")
        return rates

    def _price_rule(self, entry: ModelEntry, at: float) -> TokenPrices | Decimal:
        rule = self._prices.get(entry.id, self.default_markup)
        if isinstance(rule, PriceSchedule):
            rule = rule.at(at)
        if rule is None:
            raise self._refusal(entry, "it has no list price or markup in force")
        return rule

    @staticmethod
    def _refusal(entry: ModelEntry, why: str) -> UnpricedModel:
        return UnpricedModel(f"model {entry.id} has no price configured; refusing to serve "
                             f"it unbilled ({why})", param="model")

    # -- the API -----------------------------------------------------------------------

    def check(self, entry: ModelEntry, at: float | None = None) -> None:
        """Raises UnpricedModel unless the model and every deployment are priced now.

        A schedule's versions only start, never end, so a model priced at some moment is
        priced at every later one: that is remembered, and the check costs a dict lookup."""
        at = time.time() if at is None else at
        since = self._priced_since.get(entry.id)
        if since is not None and at >= since:
            return
        for deployment in entry.deployments:
            self._cost_rates(entry, deployment, at)
        self._price_rule(entry, at)
        self._priced_since[entry.id] = at

    def quote(self, entry: ModelEntry, deployment: Deployment, usage: Usage,
              at: float) -> tuple[int, int]:
        """(cost_pico, price_pico) of ``usage`` served by ``deployment`` at ``at``."""
        cost = self._cost_rates(entry, deployment, at).cost(usage)
        rule = self._price_rule(entry, at)
        if isinstance(rule, TokenPrices):
            return cost, rule.cost(usage)
        return cost, apply_markup(cost, rule)

    def batch_quote(self, entry: ModelEntry, deployment: Deployment, usage: Usage,
                    at: float) -> tuple[int, int]:
        """``quote`` for a request of a batch: the price less the model's
        ``batch_discount``, the cost less the deployment's ``batch_cost_discount`` (none
        unless the operator says the upstream bills such requests less)."""
        cost, price = self.quote(entry, deployment, usage, at)
        return (apply_markup(cost, -deployment.batch_cost_discount),
                apply_markup(price, -entry.batch_discount))

    def worst_case(self, entry: ModelEntry, input_tokens_estimate: int,
                   max_output_tokens: int, at: float) -> int:
        """The most any deployment could charge for that many tokens (budget reservation).

        The input is priced at the dearest input rate, because the prompt may be written to
        a cache (Anthropic charges 1.25× input for that) instead of read plainly.
        """
        shapes = [Usage(input_tokens=input_tokens_estimate, output_tokens=max_output_tokens),
                  Usage(cache_write_tokens=input_tokens_estimate,
                        output_tokens=max_output_tokens)]
        return max(self.quote(entry, d, u, at)[1] for d in entry.deployments for u in shapes)

    def unpriced(self, at: float | None = None) -> list[str]:
        """Ids of catalog models that would be refused now (for startup warnings)."""
        out = []
        for model_id, entry in sorted(self.catalog.models.items()):
            try:
                self.check(entry, at)
            except UnpricedModel:
                out.append(model_id)
        return out
