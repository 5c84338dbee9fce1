"""Dataclass ↔ row conversions shared by both backends (column order is the contract)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Sequence

import orjson

from modelmart.store.errors import StoreError
from modelmart.store.records import ApiKey, Customer, UsageRecord

CUSTOMER_COLUMNS = ("id", "name", "created_at", "rpm", "tpm")

KEY_COLUMNS = (
    "customer_id", "prefix", "secret_hash", "created_at", "role", "models", "rpm", "tpm",
    "budget_pico", "budget_period", "revoked_at", "name", "aws_access_key_id", "aws_secret",
)
# Reads add the id and the owning customer's name (LEFT JOIN: admin keys have none).
KEY_SELECT = "k.id, " + ", ".join(f"k.{c}" for c in KEY_COLUMNS) + ", c.name"
KEY_FROM = "api_keys k LEFT JOIN customers c ON c.id = k.customer_id"

USAGE_COLUMNS = (
    "request_id", "created_at", "customer_id", "key_id", "model", "deployment", "provider",
    "surface", "stream", "status", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_pico", "price_pico", "latency_ms",
    "ttft_ms", "attempts", "http_status", "error", "extra",
)
USAGE_SELECT = ", ".join(USAGE_COLUMNS)


def dump_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def load_json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def customer_from_row(row: Sequence) -> Customer:
    return Customer(*row)


def key_to_row(key: ApiKey) -> tuple:
    if key.aws_secret and not key.aws_secret_sealed:
        raise StoreError("an AWS secret must be encrypted before it is stored "
                         "(tenancy.accounts.create_key does it)")
    values = {c: getattr(key, c) for c in KEY_COLUMNS if c != "aws_secret"}
    values["models"] = dump_json(key.models)
    values["aws_secret"] = key.aws_secret_sealed  # the column holds the sealed secret only
    return tuple(values[c] for c in KEY_COLUMNS)


def key_from_row(row: Sequence) -> ApiKey:
    values = dict(zip(("id", *KEY_COLUMNS, "customer_name"), row))
    values["models"] = load_json(values["models"])
    values["aws_secret_sealed"] = values.pop("aws_secret")
    return ApiKey(**values)


def usage_to_row(rec: UsageRecord) -> tuple:
    row = [getattr(rec, c) for c in USAGE_COLUMNS]
    row[-1] = dump_json(rec.extra or {})
    return tuple(row)


# A usage record's JSON (a journal line) straight to its row, as ``usage_to_row`` would
# make it from the ``UsageRecord``: the ledger writer inserts journal lines, and building
# the record first took 8 µs a row, this 3.
_USAGE_DEFAULTS = {f.name: f.default if f.default is not MISSING else f.default_factory()
                   for f in fields(UsageRecord)
                   if f.default is not MISSING or f.default_factory is not MISSING}


def usage_row_from_json(data: dict) -> tuple:
    """The row of the record whose fields ``data`` holds (unknown keys are ignored; a
    missing required field is a TypeError, as it would be for ``UsageRecord``)."""
    try:
        row = [data[c] if c in data else _USAGE_DEFAULTS[c] for c in USAGE_COLUMNS]
    except KeyError as missing:
        raise TypeError(f"usage record without {missing}") from None
    row[-1] = dump_json(row[-1] or {})
    return tuple(row)


def usage_from_row(row: Sequence) -> UsageRecord:
    values = dict(zip(USAGE_COLUMNS, row))
    values["stream"] = bool(values["stream"])
    values["extra"] = load_json(values["extra"]) or {}
    return UsageRecord(**values)
