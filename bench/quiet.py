"""CPU used by processes that are not the benchmark's own, on a shared machine.

The benchmark's CPU is this process and all its descendants (targets, upstreams, wrk). Any
other busy CPU is someone else's (a test suite, a build) and skews the figures: each cell
waits a bounded time for the machine to be quiet, and records the foreign load it ran under.
"""

from __future__ import annotations

import os
import time

try:
    import psutil
except ImportError:
    psutil = None


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    # irq and softirq are left out: loopback traffic of our own is accounted there
    return t.user + t.nice + t.system


def _our_seconds() -> float:
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system  # includes reaped children
    for proc in me.children(recursive=True):
        try:
            c = proc.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
        except psutil.Error:
            pass
    return total


class Meter:
    """``Meter()`` then ``foreign_cores()``: cores used by others since it was made."""

    def __init__(self) -> None:
        self.available = psutil is not None
        if self.available:
            self.t0, self.busy0, self.ours0 = time.monotonic(), _busy_seconds(), _our_seconds()

    def foreign_cores(self) -> float | None:
        if not self.available:
            return None
        wall = time.monotonic() - self.t0
        if wall <= 0:
            return 0.0
        foreign = (_busy_seconds() - self.busy0) - (_our_seconds() - self.ours0)
        return max(0.0, foreign / wall)


def wait_for_quiet(threshold: float = 0.2, max_wait: float = 30.0, window: float = 1.0) -> tuple[float, float | None]:
    """Wait (at most ``max_wait`` s) until others use under ``threshold`` cores over a
    ``window``. Returns (seconds waited, the last foreign load seen, in cores)."""
    if psutil is None:
        return 0.0, None
    start = time.monotonic()
    while True:
        meter = Meter()
        time.sleep(window)
        load = meter.foreign_cores()
        waited = time.monotonic() - start
        if load < threshold or waited >= max_wait:
            return waited, load


def cores() -> int:
    return os.cpu_count() or 1
