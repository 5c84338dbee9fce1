"""The catalog as the console shows it: models, deployments, prices and costs with their
effective dates, capabilities and live health; and the smaller view a customer gets (the
models its keys may use, at their prices: never the operator's costs or upstreams)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING

from modelmart.core.types import Usage
from modelmart.metering.prices import PriceSchedule, TokenPrices

from .dashboards import iso

if TYPE_CHECKING:
    from .app import App

_MILLION = 10**6
_RATES = ("input", "output", "cache_read", "cache_write")


def per_million(pico_per_token: int) -> str:
    """Picodollars per token → USD per million tokens, as a plain decimal string."""
    return format(Decimal(pico_per_token) / _MILLION, "f")


def _rates(prices: TokenPrices) -> dict:
    out = {r: per_million(getattr(prices, r)) for r in _RATES}
    if prices.long_context is not None:
        out["long_context_above"] = prices.long_context_above
        out["long_context"] = _rates(prices.long_context)
    return out


def _versions(schedule: PriceSchedule | None) -> list[dict] | None:
    if schedule is None:
        return None
    return [{"effective_from": None if v.effective_from == float("-inf")
             else iso(v.effective_from), "source": v.source, **_rates(v.prices)}
            for v in schedule.versions]


def _price(app: "App", model_id: str) -> dict:
    rule = app.pricing.price_rule(model_id)
    if rule is None:
        return {"kind": "unpriced"}
    if isinstance(rule, PriceSchedule):
        return {"kind": "list", "versions": _versions(rule)}
    return {"kind": "markup", "markup": str(rule)}


def catalog(app: "App") -> list[dict]:
    health = app.router.health()
    out = []
    for entry in app.catalog.models.values():
        try:
            app.pricing.check(entry)
            priced = True
        except Exception:  # UnpricedModel: refused until a price and every cost are known
            priced = False
        out.append({"priced": priced,
            "id": entry.id, "strategy": entry.strategy, "description": entry.description,
            "max_output_tokens": entry.max_output_tokens, "price": _price(app, entry.id),
            "deployments": [{
                "name": d.name, "provider": d.provider, "model": d.config.model,
                "base_url": d.config.base_url or None, "weight": d.weight, "region": d.region,
                "cost": _versions(app.pricing.cost_schedule(d)),
                "capabilities": _capabilities(d.config),
                "health": health.get(d.name)} for d in entry.deployments]})
    return out


def _capabilities(config) -> dict:
    return {"tools": config.supports_tools, "images": config.supports_images,
            "json_schema": config.supports_json_schema,
            "context_window": config.context_window}


def health(app: "App") -> dict:
    return app.router.health()


def customer_models(app: "App", allowed: set[str] | None, now: float | None = None) -> list[dict]:
    """The models in ``allowed`` (None: all) with what a million tokens of each kind costs
    the customer now; for a markup over cost, the dearest deployment's ("up to")."""
    now = time.time() if now is None else now
    out = []
    for entry in app.catalog.models.values():
        if allowed is not None and entry.id not in allowed:
            continue
        item = {"id": entry.id, "description": entry.description,
                "max_output_tokens": entry.max_output_tokens}
        try:
            app.pricing.check(entry, now)
        except Exception:
            item["price"] = None  # refused until priced
            out.append(item)
            continue
        rule = app.pricing.price_rule(entry.id)
        item["price_varies"] = not isinstance(rule, PriceSchedule)
        item["price"] = {kind: format(Decimal(max(
            app.pricing.quote(entry, d, Usage(**{f"{kind}_tokens": _MILLION}), now)[1]
            for d in entry.deployments)) / 10**12, "f") for kind in _RATES}
        caps = [_capabilities(d.config) for d in entry.deployments]
        item["capabilities"] = {"tools": any(c["tools"] for c in caps),
                                "images": any(c["images"] for c in caps)}
        out.append(item)
    return out
