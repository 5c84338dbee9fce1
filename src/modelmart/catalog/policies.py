"""Routing settings of a model (``retries:``, ``cooldown:``) and a deployment's ``timeouts:``,
read from the catalog with errors that say where and what was wrong."""

from __future__ import annotations

from typing import Any

from .model import CooldownPolicy, RetryPolicy


class PolicyError(ValueError):
    """A routing setting is wrong; the loader re-raises it as a ``CatalogError``."""


def _mapping(data: Any, where: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: must be a mapping")
    return data


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _numeric(value: Any) -> Any:
    """``${VAR:-30}`` interpolates to text: accept numbers written as text too."""
    if isinstance(value, str):
        try:
            return int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            return value
    return value


def _number(data: dict, key: str, default: float, where: str, *, zero_ok: bool = False) -> float:
    value = _numeric(data.get(key, default))
    # bool is an int in Python; "timeout: true" is a typo, not a second.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{where}.{key}: must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise PolicyError(f"{where}.{key}: must be {'≥' if zero_ok else '>'} 0, not {value}")
    return float(value)


def _count(data: dict, key: str, default: int, where: str) -> int:
    value = _numeric(data.get(key, default))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"{where}.{key}: must be a whole number ≥ 1, not {value!r}")
    return value


def parse_retries(data: Any, where: str) -> RetryPolicy:
    data = _mapping(data, where)
    _check_keys(data, {"attempts", "max_attempts", "backoff", "deadline"}, where)
    backoff = _mapping(data.get("backoff"), f"{where}.backoff")
    _check_keys(backoff, {"base", "max"}, f"{where}.backoff")
    d = RetryPolicy()
    return RetryPolicy(
        attempts=_count(data, "attempts", d.attempts, where),
        max_attempts=_count(data, "max_attempts", d.max_attempts, where),
        backoff_base=_number(backoff, "base", d.backoff_base, f"{where}.backoff", zero_ok=True),
        backoff_max=_number(backoff, "max", d.backoff_max, f"{where}.backoff", zero_ok=True),
        deadline=_number(data, "deadline", d.deadline, where),
    )


def parse_cooldown(data: Any, where: str) -> CooldownPolicy:
    data = _mapping(data, where)
    _check_keys(data, {"failures", "seconds"}, where)
    d = CooldownPolicy()
    return CooldownPolicy(
        failures=_count(data, "failures", d.failures, where),
        seconds=_number(data, "seconds", d.seconds, where, zero_ok=True),
    )


def parse_timeouts(data: Any, where: str) -> tuple[float, float, float]:
    """(connect, first_token, total) seconds."""
    data = _mapping(data, where)
    _check_keys(data, {"connect", "first_token", "total"}, where)
    return (_number(data, "connect", 10, where), _number(data, "first_token", 60, where),
            _number(data, "total", 600, where))


def parse_context_window(caps: dict, where: str) -> int | None:
    if caps.get("context_window") is None:
        return None
    return _count(caps, "context_window", 1, where)
