"""The admin key from a deployment's secret (``MODELMART_ADMIN_KEY``): made once, never
printed, and refused when too short."""

from __future__ import annotations

import pytest

from modelmart.store.base import open_store
from modelmart.tenancy.accounts import ensure_admin_key
from modelmart.tenancy.keys import hash_secret

GIVEN = "mm-" + "x" * 40


async def test_a_given_admin_key_is_made_once_and_never_returned(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path / 'mm.db'}")
    try:
        printed = await ensure_admin_key(store)  # the usual first run: a generated one
        assert printed and printed.startswith("mm-")
        assert await ensure_admin_key(store, GIVEN) is None
        assert await ensure_admin_key(store, GIVEN) is None  # a second replica: no-op
        admins = [k for k in await store.list_keys(include_revoked=False) if k.role == "admin"]
        assert {k.secret_hash for k in admins} == {hash_secret(printed), hash_secret(GIVEN)}
        with pytest.raises(ValueError, match="at least 32 characters"):
            await ensure_admin_key(store, "short")
    finally:
        await store.close()
