"""How long a fuzz run is and which inputs it tries.

CI runs are reproducible: ``derandomize`` makes Hypothesis draw the same inputs every time.
``MODELMART_FUZZ_SCALE=4`` tries four times as many; ``MODELMART_FUZZ_SEED=<n>`` draws
other inputs (a bug found that way is worth a regression test of its own)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, seed, settings

SCALE = float(os.environ.get("MODELMART_FUZZ_SCALE", "1"))
SEED = os.environ.get("MODELMART_FUZZ_SEED")


def fuzz_settings(examples: int):
    """A decorator for a ``@given`` test: ``examples`` inputs (times the scale), no
    deadline, no example database, no shrinking-friendly health checks in the way."""
    chosen = settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                      derandomize=SEED is None, database=None, print_blob=False,
                      suppress_health_check=list(HealthCheck))
    if SEED is None:
        return chosen
    return lambda test: seed(int(SEED))(chosen(test))
