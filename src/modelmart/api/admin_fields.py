"""The admin API's request bodies and query parameters, field by field: each kind of field
checks a value (a 400 naming the field) and writes its own JSON schema for the OpenAPI
document, so the document says exactly what is accepted.

Optional fields take null for "not set". Numbers that end up in 64-bit columns and counters
(rate limits, budgets in picodollars) are bounded so they fit; booleans are JSON booleans;
money is a decimal string, never a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from modelmart.core.errors import InvalidRequest
from modelmart.dialects._checks import describe, shown

BY_FIELDS = ("model", "day", "month", "key", "customer", "provider", "deployment", "status")
MAX_COUNT = 2**63 - 1  # a signed 64-bit column
MAX_BUDGET_USD = 1_000_000  # exclusive: a budget in picodollars stays below 2**63
MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
FIRST_YEAR, LAST_YEAR = 1970, 9998  # the ledger's epoch; a statement's end is the next month
# FIRST_YEAR..LAST_YEAR as a pattern, for the OpenAPI document.
MONTH_PATTERN = (r"^(19[7-9]\d|[2-8]\d{3}|9[0-8]\d{2}|99[0-8]\d|999[0-8])-(0[1-9]|1[0-2])$")


def bad(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{name}: {message}", param=name)


def _nullable(schema: dict, required: bool) -> dict:
    if required:
        return schema
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*kinds, "null"]}


@dataclass(frozen=True)
class Text:
    """A name: not blank, at most ``max_len`` characters, no NUL (PostgreSQL refuses it)."""

    required: bool = False
    max_len: int = 200

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise bad(name, f"must be a string, got {describe(value)}")
        if not value.strip() or len(value) > self.max_len or "\x00" in value:
            raise bad(name, f"must be 1 to {self.max_len} characters, not blank, without NUL")
        return value

    def schema(self) -> dict:
        return _nullable({"type": "string", "minLength": 1, "maxLength": self.max_len,
                          "pattern": r"^[^\u0000]*[^\u0000\s][^\u0000]*$"}, self.required)


@dataclass(frozen=True)
class Count:
    """A positive whole number that fits a 64-bit column (an integral float such as 60.0
    is an integer in JSON Schema too)."""

    required: bool = False

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(name, f"must be an integer, got {describe(value)}")
        if not 1 <= value <= MAX_COUNT:
            raise bad(name, f"must be from 1 to {MAX_COUNT}, got {value}")
        return value

    def schema(self) -> dict:
        return _nullable({"type": "integer", "minimum": 1, "maximum": MAX_COUNT}, self.required)


# Less than MAX_BUDGET_USD, in picodollars at the finest; the pattern also says "not 0".
_USD = re.compile(r"[0-9]{1,6}(\.[0-9]{1,12})?")
_USD_PATTERN = r"^(?!0*(\.0*)?$)[0-9]{1,6}(\.[0-9]{1,12})?$"


@dataclass(frozen=True)
class Usd:
    """An amount of money as a decimal string ("25.00"): exact, unlike a JSON number."""

    required: bool = False

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise bad(name, f'must be a string of decimal USD such as "25.00", '
                            f"got {describe(value)}")
        if not _USD.fullmatch(value) or not Decimal(value):
            raise bad(name, f"must be more than 0 and less than {MAX_BUDGET_USD:,} USD, with at "
                            f"most 12 decimals, got {shown(value)}")
        return value

    def schema(self) -> dict:
        return _nullable({"type": "string", "pattern": _USD_PATTERN,
                          "description": f'decimal USD, e.g. "25.00": more than 0, less than '
                                         f"{MAX_BUDGET_USD:,}"}, self.required)


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]
    required: bool = False

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise bad(name, f"must be one of {', '.join(self.values)}, got {shown(value)}")
        return value

    def schema(self) -> dict:
        return {"enum": list(self.values) + ([] if self.required else [None])}


@dataclass(frozen=True)
class Flag:
    required: bool = False

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise bad(name, f"must be true or false, got {shown(value)}")
        return value

    def schema(self) -> dict:
        return _nullable({"type": "boolean"}, self.required)


@dataclass(frozen=True)
class Names:
    """A list of model ids."""

    required: bool = False
    max_items: int = 1000

    def check(self, name: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise bad(name, f"must be an array of model ids, got {describe(value)}")
        if not value:  # an empty list would read as "no restriction": never a default
            raise bad(name, "is empty: give at least one model id, or leave models out for "
                            "a key that may use every model")
        if len(value) > self.max_items:
            raise bad(name, f"must hold at most {self.max_items} model ids")
        for i, item in enumerate(value):
            Text(required=True).check(f"{name}[{i}]", item)
        return value

    def schema(self) -> dict:
        return _nullable({"type": "array", "minItems": 1, "maxItems": self.max_items,
                          "items": Text(required=True).schema()}, self.required)


Field = Text | Count | Usd | Choice | Flag | Names


def check_body(data: Any, fields: dict[str, Field]) -> dict[str, Any]:
    """The body's fields, checked; absent and null optional fields are None."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"Expected a JSON object, got {describe(data)}.")
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(map(shown, unknown))}; expected "
                             f"{', '.join(fields)}", param=unknown[0])
    out = {}
    for name, kind in fields.items():
        value = data.get(name)
        if value is None:
            if kind.required:
                raise bad(name, "is required")
            out[name] = None
        else:
            out[name] = kind.check(name, value)
    return out


def body_schema(fields: dict[str, Field], **rules: Any) -> dict:
    return {"type": "object", "additionalProperties": False,
            "required": [n for n, kind in fields.items() if kind.required],
            "properties": {n: kind.schema() for n, kind in fields.items()}, **rules}


CUSTOMER = {"name": Text(required=True), "rpm": Count(), "tpm": Count()}
# A budget period needs a budget (null is "not set").
KEY_RULES = {"if": {"required": ["period"], "properties": {"period": {"type": "string"}}},
             "then": {"required": ["budget_usd"],
                      "properties": {"budget_usd": {"type": "string"}}}}
KEY = {"customer": Text(required=True), "models": Names(), "rpm": Count(), "tpm": Count(),
       "budget_usd": Usd(), "period": Choice(("day", "month", "total")), "aws": Flag(),
       "name": Text()}


def month(value: str | None) -> str:
    """A ``YYYY-MM`` query parameter, in the years a statement can cover."""
    if not value:
        raise bad("month", "is required, e.g. ?month=2026-11")
    m = MONTH.fullmatch(value)
    if m is None or not FIRST_YEAR <= int(m.group(1)) <= LAST_YEAR:
        raise bad("month", f"must be written YYYY-MM, from {FIRST_YEAR}-01 to {LAST_YEAR}-12, "
                           f"got {shown(value)}")
    return value
