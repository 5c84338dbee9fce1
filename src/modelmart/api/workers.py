"""``modelmart serve --workers N``: N processes, each serving the app from the environment
with its own ``SO_REUSEPORT`` listener, so the kernel spreads connections over them; this
process watches them, starts a dead one again, and stops them all on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time

from modelmart.server import Server

log = logging.getLogger("modelmart.server")


def bind_check(host: str, port: int) -> None:
    """Fail fast (OSError) when ``host:port`` can't be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def serve_workers(workers: int, host: str, port: int, *, access_log: bool = False,
                  grace: float = 5.0, log_level: str = "info") -> int:
    """Run ``workers`` processes, each serving ``app_from_env()`` on its own listener bound
    with SO_REUSEPORT, so the kernel spreads connections over them. A worker that dies is
    started again; SIGINT/SIGTERM stop them all (each finishes its requests in flight)."""
    bind_check(host, port)  # fail here, once, rather than in every worker
    argv = [sys.executable, "-m", "modelmart.api.workers", "--host", host, "--port", str(port),
            "--grace", str(grace), "--log-level", log_level] + (
                ["--access-log"] if access_log else [])
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    started: list[float] = []
    failed_fast = False
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen(argv))
            started.append(time.monotonic())
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(procs):
                code = proc.poll()
                if code is None or stopping:
                    continue
                if time.monotonic() - started[i] < 5:
                    log.error("worker %d exited at startup (code %s): stopping", proc.pid, code)
                    failed_fast = stopping = True
                    break
                log.error("worker %d exited (code %s): starting another", proc.pid, code)
                procs[i], started[i] = subprocess.Popen(argv), time.monotonic()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed_fast else 0


def _worker_main() -> None:
    """One worker of ``serve_workers``: ``python -m modelmart.api.workers --host H --port P``."""
    from .app import app_from_env

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    Server(app_from_env(), args.host, args.port, access_log=args.access_log, reuse_port=True,
           grace=args.grace).run()


if __name__ == "__main__":
    _worker_main()
