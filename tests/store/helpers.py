"""Builders for store tests."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone

from modelmart.store.records import ApiKey, UsageRecord


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def usage(request_id: str, **fields) -> UsageRecord:
    values = dict(created_at=utc(2024, 1, 31, 10), customer_id=1, key_id=10, model="m-a",
                  deployment="d1", provider="p1", surface="openai", stream=False, status="ok")
    values.update(fields)
    return UsageRecord(request_id=request_id, **values)


def api_key(customer_id: int | None, secret: str, **fields) -> ApiKey:
    return ApiKey(id=0, customer_id=customer_id, prefix=secret[:9],
                  secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                  created_at=time.time(), **fields)
