"""``modelmart serve --workers N``: N processes, each serving the app from the environment
with its own ``SO_REUSEPORT`` listener, so the kernel spreads connections over them; this
process watches them, starts a dead one again, and stops them all on SIGINT/SIGTERM. Each
runs modelmart's own server or uvicorn (``run_server``)."""

from __future__ import annotations

import argparse
import os
import logging
import signal
import socket
import subprocess
import sys
import time

from modelmart.server import Limits, Server, raise_nofile_limit

log = logging.getLogger("modelmart.server")

SERVERS = ("modelmart", "uvicorn")


def run_server(app, host: str, port: int, *, server: str = "modelmart",
               access_log: bool = False, grace: float = 5.0, reuse_port: bool = False,
               log_level: str = "info", max_per_peer: int | None = None) -> None:
    """Serve ``app`` in this process until SIGINT/SIGTERM, with modelmart's own server or
    uvicorn. Raises OSError when the port can't be listened on, SystemExit when the app's
    startup failed."""
    raise_nofile_limit()  # the soft default of 1,024 descriptors is far too few for a server
    if server == "uvicorn":
        _run_uvicorn(app, host, port, access_log=access_log, grace=grace,
                     reuse_port=reuse_port, log_level=log_level)
        return
    limits = Limits() if max_per_peer is None else Limits(max_per_peer=max_per_peer)
    Server(app, host, port, limits=limits, access_log=access_log, reuse_port=reuse_port,
           grace=grace).run()


def _run_uvicorn(app, host: str, port: int, *, access_log: bool, grace: float,
                 reuse_port: bool, log_level: str) -> None:
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("modelmart: --server uvicorn needs uvicorn: "
                         "pip install 'modelmart[uvicorn]'") from None
    # Our logging, client addresses as the sockets say (like modelmart's server); uvloop and
    # httptools when installed (uvicorn's "auto").
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level,
                            access_log=access_log, lifespan="on", proxy_headers=False,
                            timeout_graceful_shutdown=grace, backlog=4096)
    server = uvicorn.Server(config)
    sockets = None
    if reuse_port:  # each worker its own listener, as with modelmart's server
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sockets = [socket.create_server((host, port), family=family, backlog=4096,
                                        reuse_port=True)]
    # uvicorn raises the signal that stopped it again once it has shut down, for whatever
    # handler was there before: a no-op, so serve's cleanup (ledger writer, coordinator)
    # still runs and the exit is a clean 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise SystemExit(3)  # the app's startup failed, or the port couldn't be had (logged)


def bind_check(host: str, port: int) -> None:
    """Fail fast (OSError) when ``host:port`` can't be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def serve_workers(workers: int, host: str, port: int, *, access_log: bool = False,
                  grace: float = 5.0, log_level: str = "info", server: str = "modelmart",
                  max_per_peer: int | None = None) -> int:
    """Run ``workers`` processes, each serving ``app_from_env()`` on its own listener bound
    with SO_REUSEPORT, so the kernel spreads connections over them. A worker that dies is
    started again; SIGINT/SIGTERM stop them all (each finishes its requests in flight)."""
    bind_check(host, port)  # fail here, once, rather than in every worker
    argv = [sys.executable, "-m", "modelmart.api.workers", "--host", host, "--port", str(port),
            "--grace", str(grace), "--log-level", log_level, "--server", server] + (
                ["--access-log"] if access_log else []) + (
                ["--max-per-peer", str(max_per_peer)] if max_per_peer is not None else [])
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
    from . import logs
    from .app import app_from_env

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--server", choices=SERVERS, default="modelmart")
    parser.add_argument("--max-per-peer", type=int, default=None)
    args = parser.parse_args()
    logs.configure(args.log_level, os.environ.get("MODELMART_LOG_FORMAT", "text"))
    run_server(app_from_env(), args.host, args.port, server=args.server,
               access_log=args.access_log, reuse_port=True, grace=args.grace,
               log_level=args.log_level, max_per_peer=args.max_per_peer)


if __name__ == "__main__":
    _worker_main()
