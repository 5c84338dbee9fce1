"""Token prices, their versions over time, and the provider cost catalog (``prices.yaml``).

Prices are written in USD per million tokens and held as exact picodollars per token
(``core.money``), so every cost is an integer sum. Usage is canonical (``core.types.Usage``):
``input_tokens`` excludes cache tokens and ``output_tokens`` already includes reasoning
tokens, so a cost is four products and no token is priced twice.
"""

from __future__ import annotations

import datetime as dt
import re
from bisect import bisect_right
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable

import yaml

from modelmart.core.money import per_mtok_to_pico_per_token
from modelmart.core.types import Usage

_PRICE_KEYS = {"input", "output", "cache_read", "cache_write", "caching", "long_context"}
_VERSION_KEYS = _PRICE_KEYS | {"effective_from", "source", "checked", "note"}
_BEGINNING = float("-inf")  # a version without a date applies to all time


class PriceError(ValueError):
    """A price table is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """Picodollars per token for each kind of token."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    # Anthropic and Google bill a whole request at a higher rate once its input is long.
    long_context_above: int | None = None
    long_context: TokenPrices | None = None

    def rates_for(self, usage: Usage) -> TokenPrices:
        if self.long_context is not None and usage.total_input_tokens > self.long_context_above:
            return self.long_context
        return self

    def cost(self, usage: Usage) -> int:
        p = self.rates_for(usage)
        return (usage.input_tokens * p.input + usage.output_tokens * p.output
                + usage.cache_read_tokens * p.cache_read
                + usage.cache_write_tokens * p.cache_write)


FREE = TokenPrices(0, 0, 0, 0)


def _pico(value: Any, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise PriceError(f"{where}: {value!r} is not a price")
    try:
        return per_mtok_to_pico_per_token(value)
    except ValueError as exc:
        raise PriceError(f"{where}: {exc}") from None


def parse_prices(data: Any, where: str, caching: bool = True) -> TokenPrices:
    """``{input, output, cache_read, cache_write}`` in USD per million tokens → TokenPrices.

    Cache prices are required. Only where the data says ``caching: false`` (the provider
    has no prompt caching) do they default to the input price: such a provider never
    reports cache tokens, and if one ever did they would be billed as plain input.
    """
    if not isinstance(data, dict):
        raise PriceError(f"{where}: must be a mapping of prices")
    for key in ("input", "output"):
        if key not in data:
            raise PriceError(f"{where}: the '{key}' price is required")
    caching = bool(data.get("caching", caching))
    base = _pico(data["input"], f"{where}.input")
    cache = {}
    for key in ("cache_read", "cache_write"):
        if key in data:
            cache[key] = _pico(data[key], f"{where}.{key}")
        elif not caching:
            cache[key] = base
        else:
            raise PriceError(f"{where}: '{key}' is missing; give it, or write 'caching: false' "
                             "if this provider has no prompt caching (cache tokens are then "
                             "priced as input)")
    above, long = _long_context(data.get("long_context"), f"{where}.long_context", caching)
    return TokenPrices(base, _pico(data["output"], f"{where}.output"), cache["cache_read"],
                       cache["cache_write"], above, long)


def _long_context(data: Any, where: str, caching: bool) -> tuple[int | None, TokenPrices | None]:
    if data is None:
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("above_input_tokens"), int):
        raise PriceError(f"{where}: needs above_input_tokens (an integer) and the prices")
    rest = {k: v for k, v in data.items() if k != "above_input_tokens"}
    return data["above_input_tokens"], parse_prices(rest, where, caching)


def parse_date(value: Any, where: str) -> float:
    """A date (YYYY-MM-DD, UTC midnight) or an ISO datetime → epoch seconds."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    elif isinstance(value, str):
        try:
            return parse_date(dt.datetime.fromisoformat(value), where)
        except ValueError:
            raise PriceError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None
    else:
        raise PriceError(f"{where}: {value!r} is not a date (YYYY-MM-DD)")
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class PriceVersion:
    effective_from: float  # epoch seconds; -inf for "always"
    prices: TokenPrices
    source: str | None = None
    checked: str | None = None


class PriceSchedule:
    """Versions of a price; the one in force at a moment is the latest that started."""

    def __init__(self, versions: Iterable[PriceVersion]) -> None:
        self.versions = sorted(versions, key=lambda v: v.effective_from)
        if not self.versions:
            raise PriceError("a price schedule needs at least one version")
        self._starts = [v.effective_from for v in self.versions]
        if len(set(self._starts)) != len(self._starts):
            raise PriceError("two price versions start at the same moment")

    def at(self, when: float) -> TokenPrices | None:
        i = bisect_right(self._starts, when) - 1
        return self.versions[i].prices if i >= 0 else None

    @classmethod
    def constant(cls, prices: TokenPrices) -> PriceSchedule:
        return cls([PriceVersion(_BEGINNING, prices)])


def _version(data: Any, where: str, defaults: dict, require_date: bool) -> PriceVersion:
    if not isinstance(data, dict):
        raise PriceError(f"{where}: must be a mapping")
    unknown = set(data) - _VERSION_KEYS
    if unknown:
        raise PriceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "effective_from" in data:
        start = parse_date(data["effective_from"], f"{where}.effective_from")
    elif require_date:
        raise PriceError(f"{where}: effective_from (YYYY-MM-DD) is required")
    else:
        start = _BEGINNING
    merged = {**defaults, **data}
    prices = parse_prices({k: v for k, v in merged.items() if k in _PRICE_KEYS}, where)
    checked = merged.get("checked")
    return PriceVersion(start, prices, merged.get("source"),
                        None if checked is None else str(checked))


def parse_schedule(data: Any, where: str, *, defaults: dict | None = None,
                   require_dates: bool = False) -> PriceSchedule:
    """One version (a mapping) or a list of versions → PriceSchedule."""
    items = data if isinstance(data, list) else [data]
    versions = [_version(v, f"{where}[{i}]", defaults or {}, require_dates)
                for i, v in enumerate(items)]
    try:
        return PriceSchedule(versions)
    except PriceError as exc:
        raise PriceError(f"{where}: {exc}") from None


# Snapshot suffixes: gpt-4o-2024-08-06, claude-sonnet-4-5-20250929, claude-3-5-haiku-latest.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def undated(model: str) -> str | None:
    """The model id without its snapshot suffix, or None if it has none."""
    stripped = _SNAPSHOT.sub("", model)
    return stripped if stripped != model else None


class PriceBook:
    """Provider costs keyed ``provider/upstream-model`` (``provider/*`` matches any model)."""

    def __init__(self, schedules: dict[str, PriceSchedule],
                 aliases: dict[str, str] | None = None) -> None:
        self.schedules = dict(schedules)
        self.aliases = dict(aliases or {})

    @classmethod
    def load(cls, default: bool = True, overrides: dict | None = None) -> PriceBook:
        """The shipped catalog (unless ``default=False``) with ``overrides`` on top.

        ``overrides`` maps ``"provider/model"`` to one version or a list of versions; each
        replaces that key's whole schedule. An override without ``effective_from`` applies
        to all time (a negotiated rate, say).
        """
        schedules: dict[str, PriceSchedule] = {}
        aliases: dict[str, str] = {}
        if default:
            text = resources.files(__package__).joinpath("prices.yaml").read_text()
            schedules, aliases = parse_catalog(yaml.safe_load(text), "prices.yaml")
        for key, spec in (overrides or {}).items():
            if "/" not in key:
                raise PriceError(f"price override {key!r}: write it as provider/model")
            schedules[key] = parse_schedule(spec, f"price override {key}")
            aliases.pop(key, None)
        return cls(schedules, aliases)

    def cost_schedule(self, provider_kind: str, upstream_model: str) -> PriceSchedule | None:
        """Exact id, then an alias, then the id without a snapshot suffix, then ``kind/*``."""
        for model in (upstream_model, undated(upstream_model)):
            if model is None:
                continue
            key = f"{provider_kind}/{model}"
            found = self.schedules.get(key) or self.schedules.get(self.aliases.get(key, ""))
            if found is not None:
                return found
        return self.schedules.get(f"{provider_kind}/*")


def parse_catalog(data: Any, where: str) -> tuple[dict[str, PriceSchedule], dict[str, str]]:
    """The ``prices.yaml`` shape → schedules and aliases keyed ``provider/model``."""
    providers = data.get("providers") if isinstance(data, dict) else None
    if not isinstance(providers, dict):
        raise PriceError(f"{where}: needs a 'providers' mapping")
    schedules: dict[str, PriceSchedule] = {}
    aliases: dict[str, str] = {}
    for provider, spec in providers.items():
        pwhere = f"{where}: providers.{provider}"
        if not isinstance(spec, dict) or not isinstance(spec.get("models"), dict):
            raise PriceError(f"{pwhere}: needs a 'models' mapping")
        defaults = {k: spec[k] for k in ("source", "checked", "caching") if k in spec}
        for model, versions in spec["models"].items():
            schedules[f"{provider}/{model}"] = parse_schedule(
                versions, f"{pwhere}.models.{model}", defaults=defaults, require_dates=True)
        for alias, target in (spec.get("aliases") or {}).items():
            if f"{provider}/{target}" not in schedules:
                raise PriceError(f"{pwhere}.aliases.{alias}: {target!r} is not listed")
            aliases[f"{provider}/{alias}"] = f"{provider}/{target}"
    return schedules, aliases
