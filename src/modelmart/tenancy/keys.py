"""API key secrets and the in-memory key cache that authentication reads.

Authentication never touches the store: the cache holds every active key by the sha256 of
its secret and reloads when the store's change counter moves, so a key created or revoked
in another process (CLI, admin API, another replica) takes effect within a poll interval.
The AWS secrets of SigV4 keys are decrypted here, when keys are loaded, never per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets

from modelmart.store.errors import SecretKeyError
from modelmart.store.records import ApiKey
from modelmart.store.sealing import SecretKeys, is_sealed, sealed_key_id
from modelmart.store.serverkey import HOW_TO_SET, server_keys

log = logging.getLogger(__name__)

SECRET_PREFIX = "mm-"
PREFIX_LEN = 10


def generate_secret() -> str:
    """``mm-`` and 43 url-safe characters (32 random bytes)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def prefix_of(secret: str) -> str:
    """The part of a secret that is safe to show in listings and error messages."""
    return secret[:PREFIX_LEN]


class KeyCache:
    """Active keys in memory; ``lookup`` is a dict read, the poller keeps it fresh."""

    def __init__(self, store, poll_interval: float = 0.5,
                 secret_keys: SecretKeys | None = None) -> None:
        self._store = store
        self._interval = poll_interval
        self._secret_keys = secret_keys  # None: found by ``start`` (store/serverkey.py)
        self._by_hash: dict[str, ApiKey] = {}
        self._by_aws: dict[str, ApiKey] = {}
        self._by_id: dict[int, ApiKey] = {}
        # (stored value, access key id) → plaintext, so a reload decrypts only new secrets
        self._opened: dict[tuple[str, str], str] = {}
        self._seen_counter: int | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Loads the keys. A store failure, or an AWS secret the server key cannot decrypt,
        propagates: a gateway that would refuse every SigV4 client must not start."""
        if self._secret_keys is None:
            self._secret_keys = await server_keys(self._store, create=True)
        counter = await self._store.change_counter()
        keys = await self._store.active_keys()
        failures = self._open_aws_secrets(keys)
        if failures:
            raise SecretKeyError(f"cannot decrypt the AWS secrets of {len(failures)} key(s), "
                                 "whose SigV4 clients would all be refused: "
                                 + "; ".join(failures[:3]))
        self._install(keys, counter)
        self._task = asyncio.create_task(self._poll(), name="modelmart-key-cache")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def reload(self) -> None:
        """Reload now; the admin API calls this after a change for read-your-writes."""
        # Read the counter first: a change landing between the two reads moves the
        # counter again, so the next poll reloads rather than missing it.
        counter = await self._store.change_counter()
        keys = await self._store.active_keys()
        for failure in self._open_aws_secrets(keys):
            log.error("key cache: SigV4 is off for %s", failure)
        self._install(keys, counter)

    def lookup(self, secret: str) -> ApiKey | None:
        if not secret:
            return None
        key = self._by_hash.get(hash_secret(secret))
        return key if key is not None and key.revoked_at is None else None

    def by_id(self, key_id: int) -> ApiKey | None:
        """An active key by its id (the console's sessions hold the id of their key)."""
        return self._by_id.get(key_id)

    def by_aws_access_key_id(self, access_key_id: str) -> ApiKey | None:
        key = self._by_aws.get(access_key_id) if access_key_id else None
        return key if key is not None and key.revoked_at is None else None

    @property
    def version(self) -> int | None:
        """The store change counter the cached keys reflect; moves on every reload."""
        return self._seen_counter

    def __len__(self) -> int:
        return len(self._by_hash)

    def _open_aws_secrets(self, keys: list[ApiKey]) -> list[str]:
        """Sets ``aws_secret`` (plaintext) on each key from its sealed form; returns what
        could not be decrypted, one line a key (such a key keeps working with its bearer
        secret, not with SigV4)."""
        opened, failures, plaintext = {}, [], 0
        for key in keys:
            stored, access_key_id = key.aws_secret_sealed, key.aws_access_key_id
            if not stored or not access_key_id:
                continue
            secret = self._opened.get((stored, access_key_id))
            if secret is None:
                try:
                    secret = self._open(stored, access_key_id)
                except SecretKeyError as err:
                    failures.append(f"key {key.prefix} (id {key.id}): {err}")
                    continue
            if not is_sealed(stored):
                plaintext += 1
            key.aws_secret = opened[(stored, access_key_id)] = secret
        self._opened = opened
        if plaintext:
            log.warning("key cache: %d AWS secret(s) are stored in plaintext; "
                        "'modelmart migrate' encrypts them", plaintext)
        return failures

    def _open(self, stored: str, access_key_id: str) -> str:
        if not is_sealed(stored):
            return stored  # written by an older version; migrate() encrypts it
        if self._secret_keys is None:
            raise SecretKeyError(f"its AWS secret is encrypted with server key "
                                 f"{sealed_key_id(stored)}, and no server key is "
                                 f"configured: {HOW_TO_SET}")
        return self._secret_keys.open(stored, access_key_id)

    def _install(self, keys: list[ApiKey], counter: int) -> None:
        # Build fresh dicts and swap them in, so a lookup never sees a half-built table.
        self._by_hash = {k.secret_hash: k for k in keys if k.revoked_at is None}
        self._by_aws = {k.aws_access_key_id: k for k in self._by_hash.values()
                        if k.aws_access_key_id and k.aws_secret}
        self._by_id = {k.id: k for k in self._by_hash.values()}
        self._seen_counter = counter

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await self._store.change_counter() != self._seen_counter:
                    await self.reload()
            except Exception:
                # Keep serving the last good keys; log once per outage, not every poll.
                if not failing:
                    log.exception("key cache: store poll failed; keeping %d cached keys",
                                  len(self._by_hash))
                failing = True
                continue
            if failing:
                log.info("key cache: store reachable again")
            failing = False
