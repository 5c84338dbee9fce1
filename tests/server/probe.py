"""A health probe for the attack tests: a separate process that does ``GET /health`` every
~10 ms, over a fresh connection each time or one kept alive, and reports its latencies.
Its own process, so its timing doesn't depend on what the test process is busy with.

    with HealthProbe(port) as probe:
        ...attack...
    probe.result.assert_healthy()          # p99 under 50 ms, no failure
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REQUEST = b"GET /health HTTP/1.1\r\nhost: probe\r\n\r\n"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ProbeResult:
    latencies: list[float]  # seconds, one per successful probe
    failures: list[str]

    @property
    def count(self) -> int:
        return len(self.latencies) + len(self.failures)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("inf")
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def summary(self) -> str:
        return (f"{self.count} probes, {len(self.failures)} failed, p50 "
                f"{self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
                f"max {max(self.latencies, default=0) * 1000:.1f} ms; failures: "
                f"{self.failures[:3]}")

    def assert_healthy(self, p99: float = 0.050, least: int = 20) -> None:
        assert self.count >= least, self.summary()
        assert not self.failures and self.percentile(99) < p99, self.summary()


class HealthProbe:
    def __init__(self, port: int, mode: str = "fresh", interval: float = 0.010) -> None:
        self.port, self.mode, self.interval = port, mode, interval
        self.proc: subprocess.Popen | None = None
        self.result: ProbeResult | None = None

    def __enter__(self) -> "HealthProbe":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.server.probe", str(self.port), self.mode,
             str(self.interval)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"probing"
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self.proc.communicate(timeout=30)  # closes its stdin: the signal to stop
        data = json.loads(out)
        self.result = ProbeResult(data["latencies"], data["failures"])


# ---- the probe process -------------------------------------------------------------------

def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return body


def _main(port: int, mode: str, interval: float) -> None:
    latencies: list[float] = []
    failures: list[str] = []
    sock: socket.socket | None = None
    print("probing", flush=True)
    while not select.select([sys.stdin], [], [], 0)[0]:
        started = time.perf_counter()
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(REQUEST)
            _read_response(sock)
            latencies.append(time.perf_counter() - started)
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc} after "
                            f"{time.perf_counter() - started:.2f} s")
            if sock is not None:
                sock.close()
            sock = None
        if mode == "fresh" and sock is not None:
            sock.close()
            sock = None
        time.sleep(max(0.0, started + interval - time.perf_counter()))
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    _main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
