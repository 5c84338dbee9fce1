"""Account operations shared by the CLI and the admin API: customers, keys, the admin key.

Validation errors are ``ValueError`` with a message a person can act on; the CLI prints it,
the admin API answers 400 with it (``InvalidField`` also names the field).
"""

from __future__ import annotations

import secrets
import string
import time
from decimal import Decimal, InvalidOperation

from modelmart.core.money import format_usd, pico_to_usd, usd_to_pico
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
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise InvalidField(name, f"{name} must be an integer from 1 to 2^63-1, got {value!r}")
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


MAX_BUDGET_USD = 1_000_000  # the admin API's bound too (api/admin_fields.py)


def _budget(budget_usd, period: str | None) -> tuple[int | None, str | None]:
    if budget_usd is None:
        if period is not None:
            raise ValueError("--period needs --budget")
        return None, None
    try:
        amount = Decimal(str(budget_usd))
    except InvalidOperation:
        raise ValueError(f"budget must be an amount in USD, got {budget_usd!r}") from None
    if not amount.is_finite() or not 0 < amount < MAX_BUDGET_USD:
        raise ValueError(f"budget must be more than 0 and less than {MAX_BUDGET_USD:,} USD, "
                         f"got {budget_usd!r}")
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


KEY_CHANGES = ("rpm", "tpm", "models", "budget_usd", "period", "name")


async def update_key(store: Store, ident: str, changes: dict) -> ApiKey:
    """Change an active key's limits: ``changes`` holds any of ``KEY_CHANGES``; a value of
    None removes that limit (``models``: every model; ``budget_usd``: no budget). Running
    servers pick the change up with the change counter, like a new key."""
    unknown = sorted(set(changes) - set(KEY_CHANGES))
    if unknown:
        raise InvalidField(unknown[0], f"cannot change {', '.join(unknown)}; "
                           f"a key's changeable fields are {', '.join(KEY_CHANGES)}")
    if not changes:
        raise ValueError(f"nothing to change: give any of {', '.join(KEY_CHANGES)}")
    key = await find_key(store, ident)
    if key.revoked_at is not None:
        raise ValueError(f"key {key.prefix} (id {key.id}) is revoked; make a new key")
    if key.role != "user":
        raise ValueError("the admin key has no limits to change")
    columns = {f: _positive(f, changes[f]) for f in ("rpm", "tpm") if f in changes}
    if "models" in changes:
        columns["models"] = _models(changes["models"])
    if "name" in changes:
        columns["name"] = (str(changes["name"]).strip() or None) if changes["name"] else None
    if "budget_usd" in changes or "period" in changes:
        columns.update(_budget_change(key, changes))
    await store.update_key(key.id, columns)
    updated = await store.get_key(key.id)
    return updated


def _budget_change(key: ApiKey, changes: dict) -> dict:
    if "budget_usd" in changes and changes["budget_usd"] is None:
        if changes.get("period") is not None:
            raise InvalidField("period", "a period needs a budget")
        return {"budget_pico": None, "budget_period": None}
    if "budget_usd" not in changes:  # a new period for the budget the key has
        if key.budget_pico is None:
            raise InvalidField("period", "this key has no budget: give a budget too")
        if changes["period"] not in PERIODS:
            raise InvalidField("period", f"period must be one of {', '.join(PERIODS)}, "
                               f"got {changes['period']!r}")
        return {"budget_period": changes["period"]}
    period = changes.get("period") or key.budget_period or "month"
    try:
        pico, period = _budget(changes["budget_usd"], period)
    except ValueError as exc:
        raise InvalidField("budget_usd", str(exc)) from None
    return {"budget_pico": pico, "budget_period": period}


async def update_customer(store: Store, name: str, changes: dict) -> Customer:
    """Change a customer's limits across all its keys (``rpm``, ``tpm``; None: none)."""
    unknown = sorted(set(changes) - {"rpm", "tpm"})
    if unknown:
        raise InvalidField(unknown[0], f"cannot change {', '.join(unknown)}; "
                           "a customer's changeable fields are rpm and tpm")
    if not changes:
        raise ValueError("nothing to change: give rpm and/or tpm")
    customer = await store.get_customer(name)
    if customer is None:
        raise LookupError(f"no customer named {name!r}")
    await store.update_customer(customer.id, {f: _positive(f, v) for f, v in changes.items()})
    return await store.get_customer_by_id(customer.id)


# Keys a customer may hold at once when making its own in the console.
SELF_SERVICE_MAX_KEYS = 10


async def create_own_key(store: Store, parent: ApiKey, *, name: str | None = None,
                         models: list[str] | None = None, rpm: int | None = None,
                         tpm: int | None = None, budget_usd=None) -> tuple[ApiKey, str]:
    """A key a customer makes for itself, signed in with ``parent``: never looser than
    ``parent`` (the operator's limits), whatever is asked. Models are a subset of the
    parent's; rpm, tpm and budget at most the parent's, and the parent's when not given;
    the budget's period is the parent's. The customer's own rpm/tpm hold across all its
    keys anyway; the number of its active keys is capped."""
    if parent.role != "user" or parent.customer_id is None:
        raise ValueError("only a customer's key can make keys for that customer")
    held = await store.list_keys(customer_id=parent.customer_id)
    if len(held) >= SELF_SERVICE_MAX_KEYS:
        raise ValueError(f"a customer may hold {SELF_SERVICE_MAX_KEYS} active keys; "
                         "revoke one first")
    models = _models(models)
    if parent.models is not None:
        outside = [m for m in models or () if m not in parent.models]
        if outside:
            raise InvalidField("models", f"not allowed for this account: {', '.join(outside)}")
        models = models or list(parent.models)
    limits = {}
    for field, asked, ceiling in (("rpm", rpm, parent.rpm), ("tpm", tpm, parent.tpm)):
        asked = _positive(field, asked)
        if ceiling is not None and asked is not None and asked > ceiling:
            raise InvalidField(field, f"{field} may be at most {ceiling} for this account")
        limits[field] = asked if asked is not None else ceiling
    budget_pico, period = _budget(budget_usd, None) if budget_usd is not None else (None, None)
    if parent.budget_pico is not None:
        if budget_pico is not None and budget_pico > parent.budget_pico:
            raise InvalidField("budget_usd", "the budget may be at most "
                               f"{format_usd(parent.budget_pico, 6)} USD for this account")
        budget_pico = budget_pico or parent.budget_pico
        period = parent.budget_period
    customer = await store.get_customer_by_id(parent.customer_id)
    return await create_key(
        store, customer.name, models=models, **limits, name=name, period=period,
        budget_usd=None if budget_pico is None else pico_to_usd(budget_pico))


async def find_key(store: Store, ident: str) -> ApiKey:
    ident = str(ident).strip()
    if ident.isascii() and ident.isdigit() and int(ident) < 2**63:  # not other scripts' digits
        key = await store.get_key(int(ident))
        if key is not None:
            return key
    matches = [k for k in await store.list_keys(include_revoked=True) if k.prefix == ident]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"no key with id or prefix {ident!r}")


MIN_GIVEN_SECRET = 32  # characters of an admin key given by the operator


async def ensure_admin_key(store: Store, given: str | None = None) -> str | None:
    """Make the admin key when there is none; returns its secret (to print once) or None.
    ``given`` (``MODELMART_ADMIN_KEY``, from a deployment's secret): that secret is an
    admin key, made if no active admin key has it (an earlier one stays until revoked);
    nothing is returned, as the operator has it already."""
    admins = [k for k in await store.list_keys(include_revoked=False) if k.role == "admin"]
    if given is not None:
        given = given.strip()
        if len(given) < MIN_GIVEN_SECRET:
            raise ValueError(f"MODELMART_ADMIN_KEY must be at least {MIN_GIVEN_SECRET} "
                             f"characters (modelmart keys server-key makes a good one)")
        if any(k.secret_hash == hash_secret(given) for k in admins):
            return None
    elif admins:
        return None
    secret = given or generate_secret()
    key = ApiKey(id=0, customer_id=None, prefix=prefix_of(secret), secret_hash=hash_secret(secret),
                 created_at=time.time(), role="admin", name="admin")
    try:
        await store.create_key(key)
    except Conflict:
        return None
    return None if given else secret


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
