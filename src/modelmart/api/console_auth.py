"""Console sign-in: sessions, the cookie, CSRF, and the sign-in rate limit.

- A session is made by signing in with a key: the admin key (the operator's view) or a
  customer's API key (that customer's view). The cookie holds 32 random bytes; the
  database holds their sha256 (``console_sessions``), so every worker and replica knows
  the session and a read of the table cannot be replayed.
- The cookie is HttpOnly, SameSite=Strict, Path=/console, and Secure when the request
  came over TLS (the scope's scheme, or ``x-forwarded-proto: https`` from a proxy).
- A session ends when signed out, idle for ``idle`` seconds, ``lifetime`` seconds after
  sign-in, or as soon as its key is revoked (checked at every request, from the key cache).
- CSRF: every state-changing request carries the session's token (a form's ``_csrf``
  field or an ``x-csrf-token`` header), an HMAC of the cookie's value, and its Origin (or
  else Referer) must be this server's own. SameSite alone is not enough: another port on
  the same host is the same site.
- Sign-in attempts are limited per client address and minute, through the app's counters
  (shared by workers and replicas like the rate limits).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from modelmart.store.records import ApiKey
from modelmart.store.sessions import ConsoleSession

from .http import Scope, header

COOKIE = "mm_console"
TOUCH_EVERY = 60.0  # seconds between writes of last_seen: not a write per page


@dataclass(slots=True)
class Signed:
    """A request's live session and what it may see."""

    session: ConsoleSession
    key: ApiKey
    token: str  # the raw cookie value
    csrf: str

    @property
    def operator(self) -> bool:
        return self.session.role == "admin"

    @property
    def customer_id(self) -> int | None:
        """None for the operator (every customer), else the one customer."""
        return None if self.operator else self.session.customer_id


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"modelmart-console-csrf", hashlib.sha256).hexdigest()


def over_tls(scope: Scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    proto = header(scope, b"x-forwarded-proto")
    return proto is not None and proto.split(b",")[0].strip().lower() == b"https"


def own_origin(scope: Scope) -> str | None:
    host = header(scope, b"host")
    if not host:
        return None
    return f"{'https' if over_tls(scope) else 'http'}://{host.decode('latin-1').lower()}"


def same_origin(scope: Scope) -> bool:
    """The request's Origin (or, without one, its Referer) is this server's own."""
    mine = own_origin(scope)
    if mine is None:
        return False
    origin = header(scope, b"origin")
    if origin is not None:
        return origin.decode("latin-1").lower() == mine
    referer = header(scope, b"referer")
    if referer is None:
        return False
    referer_text = referer.decode("latin-1")
    return referer_text.lower() == mine or referer_text.lower().startswith(mine + "/")


def cookie_value(scope: Scope) -> str | None:
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def client_address(scope: Scope) -> str:
    """The peer's address. X-Forwarded-For is not trusted: a client could name any."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def set_cookie(scope: Scope, token: str, max_age: int) -> tuple[bytes, bytes]:
    secure = "; Secure" if over_tls(scope) else ""
    return (b"set-cookie", f"{COOKIE}={token}; Path=/console; Max-Age={max_age}; HttpOnly; "
                          f"SameSite=Strict{secure}".encode())


def clear_cookie(scope: Scope) -> tuple[bytes, bytes]:
    secure = "; Secure" if over_tls(scope) else ""
    return (b"set-cookie", f"{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; "
                          f"SameSite=Strict{secure}".encode())


class Sessions:
    """Sign in, look up, sign out; ``idle`` and ``lifetime`` in seconds."""

    def __init__(self, app, idle: float = 30 * 60, lifetime: float = 12 * 3600,
                 attempts_per_minute: int = 10) -> None:
        self.app = app
        self.idle = idle
        self.lifetime = lifetime
        self.attempts_per_minute = attempts_per_minute

    async def allow_attempt(self, scope: Scope) -> bool:
        """Counts a sign-in attempt of this address; False past the limit this minute."""
        minute = int(time.time() // 60)
        admitted, _ = await self.app.counters.try_add(
            f"console-login:{client_address(scope)}:{minute}", 1, self.attempts_per_minute, 120)
        return admitted

    async def sign_in(self, scope: Scope, secret: str) -> tuple[str, ApiKey] | None:
        """A new session for the key whose secret this is; None for no such active key."""
        key = self.app.keys.lookup(secret.strip()) if secret else None
        if key is None or (key.role == "user" and key.customer_id is None):
            return None
        now = time.time()
        token = secrets.token_urlsafe(32)
        await self.app.store.purge_sessions(now, now - self.idle)
        await self.app.store.create_session(ConsoleSession(
            session_hash(token), key.id, key.customer_id,
            "admin" if key.role == "admin" else "customer", now, now, now + self.lifetime,
            client_address(scope)))
        return token, key

    async def current(self, scope: Scope) -> Signed | None:
        token = cookie_value(scope)
        if not token or len(token) > 100:
            return None
        id_hash = session_hash(token)
        session = await self.app.store.get_session(id_hash)
        if session is None:
            return None
        now = time.time()
        key = self.app.keys.by_id(session.key_id)
        if (now >= session.expires_at or now - session.last_seen >= self.idle
                or key is None or key.customer_id != session.customer_id):
            await self.app.store.delete_session(id_hash)
            return None
        if now - session.last_seen >= min(TOUCH_EVERY, self.idle / 4):
            await self.app.store.touch_session(id_hash, now)
            session.last_seen = now
        return Signed(session, key, token, csrf_token(token))

    async def sign_out(self, signed: Signed) -> None:
        await self.app.store.delete_session(signed.session.id_hash)

    @staticmethod
    def csrf_ok(signed: Signed, scope: Scope, submitted: str | None) -> bool:
        """The token and the origin of a state-changing request."""
        if not submitted:
            submitted = (header(scope, b"x-csrf-token") or b"").decode("latin-1")
        return bool(submitted) and hmac.compare_digest(submitted, signed.csrf) \
            and same_origin(scope)
