"""Account operations shared by the CLI and the admin API: customers, keys, the admin key.

Validation errors are ``ValueError`` with a message a person can act on; the CLI prints it,
the admin API answers 400 with it (``InvalidField`` also names the field).
"""

from __future__ import annotations

import secrets
import string
import time
from decimal import Decimal, InvalidOperation

from modelmart.core.money import usd_to_pico
from modelmart.store.base import Store
from modelmart.store.errors import Conflict
from modelmart.store.records import ApiKey, Customer
from modelmart.store.sealing import SecretKeys
from modelmart.store.serverkey import HOW_TO_SET, server_keys

from .keys import generate_secret, hash_secret, prefix_of

PERIODS = ("day", "month", "total")
_AKID_CHARS = string.ascii_uppercase + string.digits


class InvalidField(ValueError):
    """A bad value for one field of a customer or key (``field``: its name in the API)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _positive(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidField(name, f"{name} must be a positive integer, got {value!r}")
    return value


def _models(models: list[str] | None) -> list[str] | None:
    """None: every model. A list must name at least one model: a list that is empty, or
    blank once trimmed, would otherwise read as "no restriction" and open every model."""
    if models is None:
        return None
    if not isinstance(models, (list, tuple)) or not all(isinstance(m, str) for m in models):
        raise InvalidField("models", f"models must be a list of model ids, got {models!r}")
    names = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not names:
        raise InvalidField("models", "models is empty (once blanks are trimmed): give at "
                           "least one model id, or leave models out for a key that may use "
                           "every model")
    return names


async def create_customer(store: Store, name: str, *, rpm: int | None = None,
                          tpm: int | None = None) -> Customer:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValueError("a customer needs a name of 1 to 200 characters")
    return await store.create_customer(name, rpm=_positive("rpm", rpm), tpm=_positive("tpm", tpm))


def _budget(budget_usd, period: str | None) -> tuple[int | None, str | None]:
    if budget_usd is None:
        if period is not None:
            raise ValueError("--period needs --budget")
        return None, None
    try:
        amount = Decimal(str(budget_usd))
    except InvalidOperation:
        raise ValueError(f"budget must be an amount in USD, got {budget_usd!r}") from None
    if amount <= 0:
        raise ValueError("budget must be more than 0 USD")
    period = period or "month"
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    return usd_to_pico(amount), period


async def create_key(store: Store, customer_name: str, *, models: list[str] | None = None,
                     rpm: int | None = None, tpm: int | None = None, budget_usd=None,
                     period: str | None = None, aws: bool = False,
                     name: str | None = None) -> tuple[ApiKey, str]:
    """Make a key for a customer. Returns the stored key and its secret (shown once).
    With ``aws`` the key also gets an access key id and secret for SigV4 (Bedrock clients);
    they are on the returned ApiKey."""
    customer = await store.get_customer(customer_name)
    if customer is None:
        raise ValueError(f"no customer named {customer_name!r}; create it first with "
                         f"'modelmart customers create {customer_name}'")
    budget_pico, budget_period = _budget(budget_usd, period)
    secret = generate_secret()
    key = ApiKey(
        id=0, customer_id=customer.id, prefix=prefix_of(secret), secret_hash=hash_secret(secret),
        created_at=time.time(), role="user", models=_models(models),
        rpm=_positive("rpm", rpm), tpm=_positive("tpm", tpm),
        budget_pico=budget_pico, budget_period=budget_period, name=name,
    )
    if aws:
        server_key = await _server_key(store)
        key.aws_access_key_id = "AKMM" + "".join(secrets.choice(_AKID_CHARS) for _ in range(16))
        key.aws_secret = secrets.token_urlsafe(30)[:40]
        key.aws_secret_sealed = server_key.seal(key.aws_secret, key.aws_access_key_id)
    stored = await store.create_key(key)
    stored.customer_name = customer.name
    return stored, secret


async def _server_key(store: Store) -> SecretKeys:
    """The key that encrypts AWS secrets (SigV4 verification needs them, so no hash)."""
    keys = await server_keys(store, create=True)
    if keys is None:
        raise ValueError(f"AWS credentials need a server key to encrypt their secret: "
                         f"{HOW_TO_SET}")
    return keys


async def revoke_key(store: Store, ident: str) -> ApiKey:
    """Revoke a key by its id or its prefix (as listed by ``keys list``)."""
    key = await find_key(store, ident)
    if key.revoked_at is not None:
        raise ValueError(f"key {key.prefix} (id {key.id}) is already revoked")
    await store.revoke_key(key.id)
    return key


async def find_key(store: Store, ident: str) -> ApiKey:
    ident = str(ident).strip()
    if ident.isdigit():
        key = await store.get_key(int(ident))
        if key is not None:
            return key
    matches = [k for k in await store.list_keys(include_revoked=True) if k.prefix == ident]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"no key with id or prefix {ident!r}")


async def ensure_admin_key(store: Store) -> str | None:
    """Make the admin key when there is none; returns its secret (to print once) or None."""
    if any(k.role == "admin" for k in await store.list_keys(include_revoked=False)):
        return None
    secret = generate_secret()
    key = ApiKey(id=0, customer_id=None, prefix=prefix_of(secret), secret_hash=hash_secret(secret),
                 created_at=time.time(), role="admin", name="admin")
    try:
        await store.create_key(key)
    except Conflict:
        return None
    return secret


def key_view(key: ApiKey) -> dict:
    """A key as shown by listings: never the secret or its hash."""
    from modelmart.core.money import format_usd

    return {
        "id": key.id, "prefix": key.prefix, "customer": key.customer_name, "role": key.role,
        "name": key.name, "models": key.models, "rpm": key.rpm, "tpm": key.tpm,
        "budget_usd": format_usd(key.budget_pico, 6) if key.budget_pico is not None else None,
        "budget_period": key.budget_period, "created_at": key.created_at,
        "revoked_at": key.revoked_at, "aws_access_key_id": key.aws_access_key_id,
    }
