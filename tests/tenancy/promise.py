"""The rate-limit promise, checked the slow way: what was admitted, by time and by bucket."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from modelmart.store.records import ApiKey

MINUTE = 1_700_000_040.0  # the start of a minute (a multiple of 60)
T0 = MINUTE + 10


def make_key(key_id: int = 1, customer_id: int | None = 7, **limits) -> ApiKey:
    return ApiKey(id=key_id, customer_id=customer_id, prefix=f"mm-key{key_id:04d}",
                  secret_hash="h", created_at=0.0, customer_name="acme", **limits)


class Clock:
    """A fake ``time.time`` for a limiter: tests move ``now`` themselves."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Admission:
    time: float  # when it was admitted (the fake clock's reading)
    second: int  # the bucket it was counted in
    amount: int  # what it counts now (an estimate settled to the actual)


@dataclass
class LimitLog:
    """One limit's admissions."""

    limit: int
    admitted: list[Admission] = field(default_factory=list)

    def add(self, time: float, second: int, amount: int) -> Admission:
        a = Admission(time, second, amount)
        self.admitted.append(a)
        return a

    def check(self, since: float = float("-inf")) -> None:
        """No 60 seconds (a closed span) hold more than the limit, by admission time, and no
        61 consecutive buckets do either (those that end at ``since`` or later)."""
        recent = [a for a in self.admitted if a.time >= since - 62]
        by_time = sorted(recent, key=lambda a: a.time)
        times = [a.time for a in by_time]
        prefix = [0]
        for a in by_time:
            prefix.append(prefix[-1] + a.amount)
        for end, a in enumerate(by_time, 1):
            if a.time < since:
                continue
            start = bisect.bisect_left(times, a.time - 60)
            assert prefix[end] - prefix[start] <= self.limit, (
                f"{prefix[end] - prefix[start]} > {self.limit} in the 60 s up to {a.time}")
        buckets: dict[int, int] = {}
        for a in recent:
            buckets[a.second] = buckets.get(a.second, 0) + a.amount
        for s in buckets:
            if s >= since - 1:
                held = sum(buckets.get(s - k, 0) for k in range(61))
                assert held <= self.limit, f"{held} > {self.limit} in the buckets up to {s}"

    def per_second(self, since: float) -> dict[int, int]:
        """What the admissions since about ``since`` count, by bucket."""
        sums: dict[int, int] = {}
        for a in reversed(self.admitted):
            if a.time < since - 5:  # appended in about their order
                break
            sums[a.second] = sums.get(a.second, 0) + a.amount
        return sums

    def in_window(self, now: float) -> int:
        """What the buckets ``floor(now) - 60 … floor(now)`` hold: what a request at ``now``
        is checked against."""
        second = math.floor(now)
        return sum(a.amount for a in self.admitted if second - 60 <= a.second <= second)
