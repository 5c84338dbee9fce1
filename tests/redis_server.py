"""A throwaway redis-server on a free loopback port, for the tests that share limits."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from tests.fakes.script import free_port


def _die_with_parent() -> None:
    # A pytest killed by a timeout runs no finalizers; this keeps redis from outliving it.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_redis(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, "redis-server exited at startup"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING")


class RedisProcess:
    """A redis-server that a test can stop and start again on the same port (an outage)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        assert self.binary, "redis-server is required (apt-get install -y redis-server)"
        self.workdir = tempfile.mkdtemp(prefix="mm-redis-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisProcess":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             self.workdir, "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        _wait_for_redis(self.port, self.proc)
        return self

    def stop(self) -> None:
        """Gone, with everything it held (no persistence): as a restarted Redis."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    """Yields ``redis://127.0.0.1:PORT/0``; the server and its folder are gone afterwards."""
    server = RedisProcess()
    try:
        yield server.start().url
    finally:
        server.close()
