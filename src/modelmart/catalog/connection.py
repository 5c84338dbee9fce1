"""A deployment's connection settings: ``tls:``, ``proxy:`` and ``limits:``, read from the
catalog with errors that say where and what was wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelmart.providers.base import TLSSettings, UpstreamLimits

from .policies import PolicyError, _check_keys, _mapping, _numeric

# limits: key → (UpstreamLimits field, bytes per unit of the key)
_LIMIT_KEYS = {
    "header_kb": ("header_bytes", 1 << 10),
    "headers": ("headers", 1),
    "body_mb": ("body_bytes", 1 << 20),
    "event_mb": ("event_bytes", 1 << 20),
}


def parse_limits(data: Any, where: str) -> UpstreamLimits:
    """``limits: {header_kb, headers, body_mb, event_mb}``: how much the upstream may send."""
    data = _mapping(data, where)
    _check_keys(data, set(_LIMIT_KEYS), where)
    values = {}
    for key, (field, unit) in _LIMIT_KEYS.items():
        if key not in data:
            continue
        value = _numeric(data[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise PolicyError(f"{where}.{key}: must be a number > 0, not {data[key]!r}")
        if field == "headers" and not float(value).is_integer():
            raise PolicyError(f"{where}.{key}: must be a whole number, not {value!r}")
        values[field] = max(1, int(value * unit))
    return UpstreamLimits(**values)


def parse_tls(data: Any, where: str) -> TLSSettings | None:
    """``tls: {ca_file, ca_dir, verify}``; None when the key is absent."""
    if data is None:
        return None
    data = _mapping(data, where)
    _check_keys(data, {"ca_file", "ca_dir", "verify"}, where)
    paths = {}
    for key in ("ca_file", "ca_dir"):
        value = data.get(key)
        if value in (None, ""):
            continue
        path = Path(str(value)).expanduser()
        if not (path.is_file() if key == "ca_file" else path.is_dir()):
            kind = "file" if key == "ca_file" else "directory"
            raise PolicyError(f"{where}.{key}: no such {kind}: {value}")
        paths[key] = str(path)
    verify = data.get("verify", True)
    if isinstance(verify, str) and verify.lower() in ("true", "false"):
        verify = verify.lower() == "true"  # from ${VAR:-true}
    if not isinstance(verify, bool):
        raise PolicyError(f"{where}.verify: must be true or false, not {verify!r}")
    return TLSSettings(verify=verify, **paths)


def parse_proxy(value: Any, where: str) -> str | None:
    """``proxy: http://[user:password@]host:port``, or ``false`` / ``""`` for none even when
    the environment names one; None (absent): the environment's."""
    if value is None:
        return None
    if value is False or value == "" or (isinstance(value, str) and value.lower() in
                                         ("false", "none", "off")):
        return ""
    if not isinstance(value, str):
        raise PolicyError(f"{where}: must be an http:// URL or false, not {value!r}")
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.hostname:
        # Not the value itself: it may hold a password.
        raise PolicyError(f"{where}: must be an http://host:port URL (scheme "
                          f"{parts.scheme or 'missing'!r}); https and socks proxies are "
                          "not supported")
    return value
