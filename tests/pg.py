"""A throwaway PostgreSQL server for tests: ``with postgres_server() as url: ...``.

The PostgreSQL binaries refuse to run as root, so as root the server runs as an unprivileged
system user (``postgres`` if it exists, else a ``modelmart-pg`` user we create). Everything
lives in one temp folder (data, unix socket, log) removed at the end; auth is trust and the
server listens on 127.0.0.1 on a free port. Use from any test package; the store tests wrap
it in a session fixture (tests/store/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from typing import Iterator

import asyncpg

SUPERUSER = "postgres"  # the database role, whatever the OS user is
FALLBACK_OS_USER = "modelmart-pg"


def _os_user() -> str | None:
    """The OS user to run the server as; None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", FALLBACK_OS_USER], check=True)
    return FALLBACK_OS_USER


def _run(user: str | None, *cmd: str) -> None:
    prefix = ["runuser", "-u", user, "--"] if user else []
    proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_async(coro):
    """Runs a coroutine to completion even when the caller is inside an event loop."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    return result[0]


async def create_database(url: str, name: str) -> str:
    """Creates database ``name`` on the server of ``url``; returns the new database's URL."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


def _start(user: str | None, folder: str) -> int:
    data = os.path.join(folder, "data")
    _run(user, "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
         "--locale=C", "--no-sync")
    for _ in range(3):  # another process may grab the free port before we bind it
        port = _free_port()
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        try:
            _run(user, "pg_ctl", "-D", data, "-o", options, "-l",
                 os.path.join(folder, "server.log"), "-w", "-t", "60", "start")
            return port
        except RuntimeError:
            continue
    raise RuntimeError(f"PostgreSQL did not start; see {folder}/server.log")


@contextlib.contextmanager
def postgres_server(database: str = "modelmart") -> Iterator[str]:
    """Starts a server, creates ``database`` and yields its postgresql:// URL."""
    user = _os_user()
    folder = tempfile.mkdtemp(prefix="modelmart-pg-")
    if user:
        shutil.chown(folder, user)
    try:
        port = _start(user, folder)
        try:
            admin = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
            yield run_async(create_database(admin, database))
        finally:
            _run(user, "pg_ctl", "-D", os.path.join(folder, "data"), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PostgresProcess:
    """A PostgreSQL server that a test can stop and start again on the same port (an
    outage): ``url`` is its ``database``'s."""

    def __init__(self, database: str = "modelmart") -> None:
        self.user = _os_user()
        self.folder = tempfile.mkdtemp(prefix="modelmart-pg-")
        if self.user:
            shutil.chown(self.folder, self.user)
        self.data = os.path.join(self.folder, "data")
        self.port = _start(self.user, self.folder)
        self.running = True
        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self.url = run_async(create_database(admin, database))

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when the database goes down."""
        _run(self.user, "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        self.running = False

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c max_connections=200")
        _run(self.user, "pg_ctl", "-D", self.data, "-o", options, "-l",
             os.path.join(self.folder, "server.log"), "-w", "-t", "60", "start")
        self.running = True

    def close(self) -> None:
        if self.running:
            _run(self.user, "pg_ctl", "-D", self.data, "-m", "immediate", "stop")
            self.running = False
        shutil.rmtree(self.folder, ignore_errors=True)
