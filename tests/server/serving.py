"""Servers for the tests: an ASGI app served by modelmart's server or by uvicorn in a thread
of the test process (``serve``), or ``tests.server.asgi.app`` in a process of its own
(``ServerProcess``), and raw-socket helpers."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.fakes.script import free_port

KINDS = ("modelmart", "uvicorn")
ROOT = Path(__file__).resolve().parents[2]


class Served:
    """An app served in a background thread; ``server`` is the server object itself."""

    def __init__(self, app, kind: str = "modelmart", *, keepalive: float = 5.0,
                 root_path: str = "", access_log: bool = False, lifespan: bool = False,
                 **limits) -> None:
        self.kind, self.port = kind, free_port()
        if kind == "modelmart":
            from modelmart.server import Limits, Server

            self.server = Server(app, "127.0.0.1", self.port,
                                 limits=Limits(keepalive=keepalive, **limits),
                                 access_log=access_log, root_path=root_path,
                                 lifespan=lifespan, grace=3.0)
            target = lambda: self.server.run(False)  # noqa: E731
        else:
            import uvicorn

            assert not limits, f"uvicorn has no counterpart for {limits}"
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                    log_level="info" if access_log else "warning",
                                    access_log=access_log,
                                    timeout_keep_alive=keepalive, root_path=root_path,
                                    lifespan="on" if lifespan else "off", ws="none",
                                    timeout_graceful_shutdown=3, loop="asyncio")
            self.server = uvicorn.Server(config)
            if access_log:  # an earlier server without one turned its propagation off
                logging.getLogger("uvicorn.access").propagate = True
            target = self.server.run
        self.thread = threading.Thread(target=target, daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return connect(self.port, timeout)


def serve(app, kind: str = "modelmart", **options) -> Served:
    return Served(app, kind, **options)


class ServerProcess:
    """``tests.server.asgi.app`` served in its own process, by ``kind``, with ``limits``
    (``Limits`` fields) and, if given, a soft RLIMIT_NOFILE of ``nofile``."""

    def __init__(self, kind: str = "modelmart", nofile: int | None = None, **limits) -> None:
        self.kind, self.port = kind, free_port()
        argv = [sys.executable, "-m", "tests.server.run_server", str(self.port), kind,
                json.dumps(limits)] + ([str(nofile)] if nofile else [])
        self.proc = subprocess.Popen(argv, cwd=ROOT)

    def __enter__(self) -> "ServerProcess":
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, f"the server exited ({self.proc.returncode})"
            try:
                with connect(self.port, 1) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
                    if recv_until_closed(sock, quiet=0.5).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return connect(self.port, timeout)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_until_closed(sock: socket.socket, quiet: float = 1.0, limit: float = 10.0) -> bytes:
    """What arrives until the server closes, or nothing arrives for ``quiet`` seconds."""
    sock.settimeout(quiet)
    out = b""
    deadline = time.monotonic() + limit
    with contextlib.suppress(TimeoutError):
        while time.monotonic() < deadline and (chunk := sock.recv(65536)):
            out += chunk
    return out


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (what it sent first is
    ignored)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def talk(port: int, *parts: bytes, quiet: float = 0.5, pause: float = 0.05) -> tuple[bytes, bool]:
    """Send ``parts`` on a new connection (``pause`` seconds apart), and read until the
    server closes or goes quiet: what came back, and whether the server closed."""
    with connect(port) as sock:
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            sock.sendall(part)
        sock.settimeout(quiet)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            return out, False
        except ConnectionResetError:
            pass
        return out, True


def exchange(port: int, data: bytes, quiet: float = 0.5) -> bytes:
    """Send bytes on a new connection, and read until the server closes or goes quiet."""
    with connect(port) as sock:
        sock.sendall(data)
        return recv_until_closed(sock, quiet)


def responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split what a server sent into (head, body) pairs: content-length and chunked bodies;
    a reply with neither runs to the end."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            out.append((head, b""))
            break
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        status = int(head.split(b" ")[1])
        if 100 <= status < 200 or status in (204, 304):
            body, data = b"", rest
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            data = rest
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
            body, data = rest[:length], rest[length:]
        else:
            body, data = rest, b""
        out.append((head, body))
    return out
