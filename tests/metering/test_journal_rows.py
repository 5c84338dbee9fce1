"""The ledger writer turns journal lines into rows without building records: the rows must
be the ones the records would give."""

from __future__ import annotations

import random

import orjson
import pytest

from modelmart.metering import journal
from modelmart.store.records import UsageRecord
from modelmart.store.rows import usage_to_row


def _record(rng: random.Random) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{rng.getrandbits(40):x}", created_at=rng.random() * 2e9,
        customer_id=rng.choice([None, 3]), key_id=rng.choice([None, 9]),
        model=rng.choice(["m", "é✓ model"]), deployment=rng.choice([None, "d"]),
        provider=rng.choice([None, "openai"]), surface="openai", stream=rng.random() < 0.5,
        status=rng.choice(["ok", "error"]), input_tokens=rng.randint(0, 10**6),
        output_tokens=rng.randint(0, 10**6), cost_pico=rng.randint(0, 10**15),
        price_pico=rng.randint(0, 10**15), latency_ms=rng.random() * 1000,
        ttft_ms=rng.choice([None, 1.5]), attempts=rng.randint(1, 4),
        http_status=rng.choice([200, 502]), error=rng.choice([None, 'bad "quote"']),
        extra=rng.choice([{}, {"usage_estimated": True}, {"n": [1, 2]}]))


def test_journal_rows_are_the_rows_of_their_records():
    rng = random.Random(2)
    for _ in range(500):
        line = journal.encode(_record(rng))
        assert journal.row(line) == usage_to_row(journal.decode(line))


def test_a_line_with_fields_left_out_or_unknown_gets_what_its_record_would():
    data = orjson.loads(journal.encode(_record(random.Random(1))))
    for name in ("ttft_ms", "extra", "reasoning_tokens", "attempts"):
        del data[name]
    data["added_by_a_newer_version"] = 1
    line = orjson.dumps(data)
    assert journal.row(line) == usage_to_row(journal.decode(line))
    del data["request_id"]  # required: refused either way
    with pytest.raises(TypeError):
        journal.row(orjson.dumps(data))
    with pytest.raises(TypeError):
        journal.decode(orjson.dumps(data))
    with pytest.raises(ValueError):
        journal.row(b"[1, 2]")
