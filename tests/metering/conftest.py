"""Metering fixtures: a real SQLite store, and a store whose database can be taken down."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from modelmart.store.base import open_store
from modelmart.store.records import UsageRecord


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def usage_record(request_id: str, **fields) -> UsageRecord:
    values = dict(created_at=utc(2026, 3, 10, 12), customer_id=None, key_id=None,
                  model="gpt", deployment="gpt/openai-0", provider="openai",
                  surface="openai", stream=False, status="ok")
    values.update(fields)
    return UsageRecord(request_id=request_id, **values)


class FlakyStore:
    """Passes ledger calls to a real store, or fails them while ``down`` (a dead DB)."""

    def __init__(self, store, down: bool = False) -> None:
        self.store = store
        self.down = down
        self.failures = 0
        self.batches: list[int] = []

    async def insert_usage(self, records):
        if self.down:
            self.failures += 1
            raise ConnectionError("database is down")
        self.batches.append(len(records))
        return await self.store.insert_usage(records)


@pytest.fixture
async def store(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield store
    await store.close()
