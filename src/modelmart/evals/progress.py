"""A progress line on stderr: items done, errors, spend, rate and ETA.

On a terminal the line is redrawn in place (at most five times a second); otherwise a line
is printed every ``every_s`` seconds, so logs of long runs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from modelmart.core.money import format_usd


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s
        self.total = self.done = self.errors = self.spent_pico = 0
        self._resumed = 0
        self._t0 = self._last = 0.0

    def start(self, total: int, done: int = 0, spent_pico: int = 0) -> None:
        self.total, self.done, self._resumed, self.spent_pico = total, done, done, spent_pico
        self._t0 = time.monotonic()
        self._draw(force=True)

    def advance(self, *, error: bool, spent_pico: int) -> None:
        self.done += 1
        self.errors += error
        self.spent_pico = spent_pico
        self._draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        fresh = self.done - self._resumed
        eta = (elapsed / fresh * (self.total - self.done)) if fresh else None
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} items · {self.errors} errors · "
                f"${format_usd(self.spent_pico, 4)} · {_duration(elapsed)} elapsed · "
                f"ETA {_duration(eta) if eta is not None else '?'}")

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = 0.2 if self.tty else self.every_s
        if not force and now - self._last < interval and self.done < self.total:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self, status: str) -> None:
        self._draw(force=True)
        self.stream.write(("\n" if self.tty else "") + f"{self.label}: {status}\n")
        self.stream.flush()
