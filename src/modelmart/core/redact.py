"""Credentials scrubbed out of text that came from an upstream.

An upstream's error text is untrusted: a proxy or a debugging server may echo the request
headers back, and with them the gateway's own provider key. Before such text reaches a
client, a log line, the ledger or the admin API, ``Redactor`` replaces every credential the
gateway holds for that upstream (exact values) and anything shaped like a credential
(``Bearer <token>``, ``sk-...``, AWS access key ids, Google API keys, ``x-api-key: ...``,
the password in ``scheme://user:pass@host``). Pure functions: no I/O, no wire format.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import unquote, urlsplit

REDACTED = "[redacted]"
# Shorter configured values are not scrubbed as exact strings: replacing every "abc" in a
# message would wreck it, and a secret that short guards nothing anyway.
MIN_SECRET = 6

# Names of headers (and credential file keys) whose value is a secret wherever it appears
# as ``name: value`` or ``name=value``, quoted or not, JSON-escaped or not.
_SECRET_NAMES = (
    r"x-api-key|api-key|api_key|apikey|x-goog-api-key|authorization|proxy-authorization|"
    r"x-amz-security-token|aws_secret_access_key|aws_session_token|secret_access_key|"
    r"session_token|access_token|refresh_token|client_secret|password")

_SHAPES = re.compile(
    r"(?P<scheme>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    rf"|(?P<name>\b(?:{_SECRET_NAMES})\b[\\\"']*\s*[:=]\s*[\\\"']*)"
    r"(?!Bearer\s|Basic\s|\[redacted\])[^\s\"'\\,;}&]+"
    r"|\bsk-[A-Za-z0-9_-]{8,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@\"'<>]+@",
    re.IGNORECASE)


def _shape(match: re.Match) -> str:
    prefix = match.group("scheme") or match.group("name") or match.group("url") or ""
    return f"{prefix}{REDACTED}@" if match.group("url") else prefix + REDACTED


class Redactor:
    """Scrubs the given secrets (exact values, longest first) and every credential-shaped
    string. Build one per upstream and reuse it: the pattern is compiled once."""

    __slots__ = ("_exact",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len,
                        reverse=True)
        self._exact = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        return _SHAPES.sub(_shape, text)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``Redactor(secrets)(text)``, for one-off use."""
    return Redactor(secrets)(text)


def url_secrets(url: str | None) -> list[str]:
    """The credentials in a URL's userinfo (raw and percent-decoded), for a ``Redactor``."""
    if not url or "@" not in url:
        return []
    parts = urlsplit(url)
    out = []
    for value in (parts.username, parts.password):
        if value:
            out += [value, unquote(value)]
    return out


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: the form a URL may take in a log line."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
