"""API key secrets and the in-memory key cache that authentication reads.

Authentication never touches the store: the cache holds every active key by the sha256 of
its secret and reloads when the store's change counter moves, so a key created or revoked
in another process (CLI, admin API, another replica) takes effect within a poll interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets

from modelmart.store.records import ApiKey

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

    def __init__(self, store, poll_interval: float = 0.5) -> None:
        self._store = store
        self._interval = poll_interval
        self._by_hash: dict[str, ApiKey] = {}
        self._by_aws: dict[str, ApiKey] = {}
        self._seen_counter: int | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        # A store failure here propagates: a gateway that cannot load keys must not start.
        await self.reload()
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
        self._install(await self._store.active_keys(), counter)

    def lookup(self, secret: str) -> ApiKey | None:
        if not secret:
            return None
        key = self._by_hash.get(hash_secret(secret))
        return key if key is not None and key.revoked_at is None else None

    def by_aws_access_key_id(self, access_key_id: str) -> ApiKey | None:
        key = self._by_aws.get(access_key_id) if access_key_id else None
        return key if key is not None and key.revoked_at is None else None

    @property
    def version(self) -> int | None:
        """The store change counter the cached keys reflect; moves on every reload."""
        return self._seen_counter

    def __len__(self) -> int:
        return len(self._by_hash)

    def _install(self, keys: list[ApiKey], counter: int) -> None:
        # Build fresh dicts and swap them in, so a lookup never sees a half-built table.
        self._by_hash = {k.secret_hash: k for k in keys if k.revoked_at is None}
        self._by_aws = {k.aws_access_key_id: k for k in self._by_hash.values()
                        if k.aws_access_key_id}
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
