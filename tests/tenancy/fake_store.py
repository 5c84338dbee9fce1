"""A tiny in-memory stand-in for the store API tenancy relies on, counting every call."""

from __future__ import annotations

import time
from collections import Counter

from modelmart.store.records import ApiKey, Customer
from modelmart.tenancy.keys import generate_secret, hash_secret, prefix_of


class FakeStore:
    def __init__(self) -> None:
        self.keys: dict[int, ApiKey] = {}
        self.customers: dict[int, Customer] = {}
        self.ledger: list[tuple[int, float, int]] = []  # (key id, created_at, price)
        self.counter = 0
        self.calls: Counter[str] = Counter()
        self.fail = False  # make every call raise, as an unreachable database would

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.fail:
            raise ConnectionError("database is down")

    async def active_keys(self) -> list[ApiKey]:
        self._call("active_keys")
        return [k for k in self.keys.values() if k.revoked_at is None]

    async def change_counter(self) -> int:
        self._call("change_counter")
        return self.counter

    async def list_customers(self) -> list[Customer]:
        self._call("list_customers")
        return list(self.customers.values())

    async def spent(self, key_id=None, customer_id=None, since=None) -> int:
        self._call("spent")
        return sum(price for kid, at, price in self.ledger
                   if (key_id is None or kid == key_id) and (since is None or at >= since))

    async def create_key(self, key: ApiKey) -> ApiKey:
        self._call("create_key")
        key.id = len(self.keys) + 1
        self.keys[key.id] = key
        self.counter += 1
        return key

    # Test helpers, not part of the store API.
    async def new_key(self, **fields) -> tuple[str, ApiKey]:
        secret = generate_secret()
        key = ApiKey(id=0, customer_id=fields.pop("customer_id", 1), prefix=prefix_of(secret),
                     secret_hash=hash_secret(secret), created_at=time.time(), **fields)
        return secret, await self.create_key(key)

    def revoke(self, key_id: int) -> None:
        self.keys[key_id].revoked_at = time.time()
        self.counter += 1
