"""Resident memory stays flat under sustained load (issue #15): a short soak in every run,
the long one (200,000 requests, a few minutes) when ``MODELMART_SOAK_REQUESTS`` asks for it:

    MODELMART_SOAK_REQUESTS=200000 python3 -m pytest tests/soak -q
"""

from __future__ import annotations

import os

import pytest

from tests.deploy.common import nginx_binary
from tests.soak.soak import soak

LONG = int(os.environ.get("MODELMART_SOAK_REQUESTS") or 0)


def _check(requests: int) -> None:
    run = soak(requests, nginx=nginx_binary())
    print(run.report())
    assert run.statuses == {200: requests}, run.report()
    assert run.ledger_rows == requests, run.report()
    assert run.growth() <= 0.10, run.report()


def test_a_short_soak_keeps_memory_flat_and_every_row():
    _check(8_000)


@pytest.mark.skipif(not LONG, reason="the long soak: set MODELMART_SOAK_REQUESTS=200000")
def test_the_long_soak_keeps_memory_flat_and_every_row():
    _check(LONG)
