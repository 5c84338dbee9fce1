"""Verify an incoming AWS Signature Version 4 request (what boto3 ``bedrock-runtime`` sends
when pointed at modelmart with ``endpoint_url``).

The canonical request is rebuilt the way botocore builds it (``botocore.auth.SigV4Auth``):
the path exactly as sent, dot segments and doubled slashes removed, then percent-encoded
once more (so a model id sent as ``nova-lite-v1%3A0`` is signed as ``nova-lite-v1%253A0``;
only S3 skips that second encoding); the query sorted and RFC 3986-encoded; the signed
headers lowercased with their values trimmed; the SHA-256 of the body.

Failures raise ``AuthenticationFailed`` (who are you?) or ``PermissionDenied`` (the
signature is wrong or stale), with AWS's own messages, and with the AWS error code in
``err.headers["x-amzn-errortype"]`` for the Bedrock dialect to send.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable
from urllib.parse import quote, unquote_plus

from modelmart.core.errors import AuthenticationFailed, GatewayError, PermissionDenied

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_ERROR_TYPE = "x-amzn-errortype"

SecretLookup = Callable[[str], "str | None"]


def verify_sigv4(method: str, raw_path: bytes, query: bytes,
                 headers: Iterable[tuple[bytes, bytes]], body: bytes,
                 secret_for: SecretLookup, *, service: str = "bedrock",
                 now: datetime | None = None) -> str:
    """Return the access key id that signed the request, or raise.

    ``raw_path`` is the path as sent, still percent-encoded (ASGI ``scope["raw_path"]``),
    never the decoded ``scope["path"]``: the signature covers the encoded form."""
    by_name = _header_map(headers)
    auth = _parse_authorization(by_name.get("authorization"))
    akid, date, region, scope_service = auth["scope"]
    if scope_service != service:
        raise _incomplete(f"Credential should be scoped to correct service: '{service}'.")
    timestamp = _request_time(by_name)
    signed = auth["signed_headers"]
    for required in ("host", "x-amz-date" if "x-amz-date" in by_name else "date"):
        if required not in signed:
            raise _incomplete(f"Header '{required}' must be signed (SignedHeaders).")
    if timestamp.strftime("%Y%m%d") != date:
        raise _incomplete(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                          f"version of date from HTTP: '{date}' != "
                          f"'{timestamp.strftime('%Y%m%d')}'.")
    _check_skew(timestamp, now or datetime.now(timezone.utc))
    secret = secret_for(akid)
    if not secret:
        raise _error(AuthenticationFailed, "The security token included in the request is "
                     "invalid.", "UnrecognizedClientException")
    canonical = canonical_request(method, raw_path, query, by_name, signed,
                                  _payload_hash(by_name, body))
    string_to_sign = "\n".join([
        ALGORITHM, timestamp.strftime(_TIMESTAMP), f"{date}/{region}/{service}/aws4_request",
        hashlib.sha256(canonical.encode()).hexdigest()])
    expected = _signature(secret, date, region, service, string_to_sign)
    if not hmac.compare_digest(expected, auth["signature"]):
        raise _error(PermissionDenied, "The request signature we calculated does not match "
                     "the signature you provided. Check your AWS Secret Access Key and "
                     "signing method.", "InvalidSignatureException")
    return akid


def claimed_access_key_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The access key id a SigV4 ``Authorization`` header names, checked for form only: lets
    an unknown key be refused from the headers, before the body it signs is read."""
    return _parse_authorization(_header_map(headers).get("authorization"))["scope"][0]


def canonical_request(method: str, raw_path: bytes, query: bytes,
                      by_name: dict[str, list[str]], signed: list[str],
                      payload_hash: str) -> str:
    lines = [method.upper(), canonical_path(raw_path), canonical_query(query)]
    for name in signed:
        values = by_name.get(name)
        if values is None:
            raise _error(PermissionDenied, f"Signed header '{name}' is missing from the "
                         "request.", "InvalidSignatureException")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    return "\n".join(lines + ["", ";".join(signed), payload_hash])


def canonical_path(raw_path: bytes) -> str:
    path = raw_path.decode("utf-8", "replace") or "/"
    segments = [s for s in path.split("/") if s and s != "."]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    normal = "/" + "/".join(out)
    if path.endswith("/") and out:
        normal += "/"
    return quote(normal, safe="/~")


def canonical_query(query: bytes) -> str:
    pairs = []
    for item in query.decode("utf-8", "replace").split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        # '+' is a space: botocore signs params as %20 but sends them form-encoded.
        pairs.append((quote(unquote_plus(key), safe="-_.~"),
                      quote(unquote_plus(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _signature(secret: str, date: str, region: str, service: str, string_to_sign: str) -> str:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _header_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.decode("latin-1").lower(), []).append(
            value.decode("utf-8", "replace"))
    return out


def _parse_authorization(values: list[str] | None) -> dict:
    if not values:
        raise _error(AuthenticationFailed, "Missing Authentication Token",
                     "MissingAuthenticationTokenException")
    algorithm, _, rest = values[0].strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported authorization type {algorithm!r}; expected "
                          f"{ALGORITHM}.")
    fields = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise _incomplete(f"Authorization header requires {', '.join(missing)} "
                          f"parameter(s): {values[0][:80]}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _incomplete("Credential must have the form "
                          "<access key id>/<date>/<region>/<service>/aws4_request.")
    return {"scope": scope[:4], "signature": fields["Signature"].lower(),
            "signed_headers": fields["SignedHeaders"].lower().split(";")}


def _request_time(by_name: dict[str, list[str]]) -> datetime:
    try:
        if "x-amz-date" in by_name:
            return datetime.strptime(by_name["x-amz-date"][0], _TIMESTAMP).replace(
                tzinfo=timezone.utc)
        if "date" in by_name:
            return parsedate_to_datetime(by_name["date"][0]).astimezone(timezone.utc)
    except (ValueError, TypeError):
        raise _incomplete("X-Amz-Date must be an ISO 8601 basic timestamp "
                          "(20240101T120000Z).") from None
    raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' "
                      "or a 'Date' header.")


def _check_skew(timestamp: datetime, now: datetime) -> None:
    if timestamp < now - MAX_SKEW:
        raise _error(PermissionDenied, f"Signature expired: {timestamp.strftime(_TIMESTAMP)} "
                     f"is now earlier than {(now - MAX_SKEW).strftime(_TIMESTAMP)}.",
                     "InvalidSignatureException")
    if timestamp > now + MAX_SKEW:
        raise _error(PermissionDenied, f"Signature not yet current: "
                     f"{timestamp.strftime(_TIMESTAMP)} is still later than "
                     f"{(now + MAX_SKEW).strftime(_TIMESTAMP)}.", "InvalidSignatureException")


def _payload_hash(by_name: dict[str, list[str]], body: bytes) -> str:
    actual = hashlib.sha256(body).hexdigest()
    claimed = by_name.get("x-amz-content-sha256", [actual])[0].strip().lower()
    if claimed == "unsigned-payload":
        # The body would then be unauthenticated; nothing Bedrock clients need.
        raise _incomplete("UNSIGNED-PAYLOAD is not accepted; sign the request body.")
    if claimed != actual:
        raise _error(PermissionDenied, "The provided 'x-amz-content-sha256' header does not "
                     "match what was computed.", "InvalidSignatureException")
    return actual


def _incomplete(message: str) -> GatewayError:
    return _error(AuthenticationFailed, message, "IncompleteSignatureException")


def _error(cls: type[GatewayError], message: str, aws_type: str) -> GatewayError:
    return cls(message, headers={_ERROR_TYPE: aws_type})
