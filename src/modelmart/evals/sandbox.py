"""Run untrusted Python (a model's code plus its tests) in a throwaway subprocess.

What confines it:
- a fresh temporary folder as its working directory and home, removed afterwards;
- rlimits: CPU seconds, address space, file size, number of processes (RLIMIT_NPROC does not
  bind root: as root, a fork bomb is stopped by the CPU limit and the wall clock instead),
  no core files;
- a wall-clock timeout, after which its whole process group is killed;
- an environment with nothing inherited (no API keys, no database URL), ``python -I``
  (ignores PYTHON* variables and the user's site folder), stdin closed;
- no network: the child enters a new network namespace (only a down loopback) before it
  runs the code, where the kernel allows it (root, or unprivileged user namespaces). Where
  it does not, ``network_isolated()`` is False and the code can reach the network: run
  evaluations of untrusted models in a container then.

This is a seatbelt, not a jail: code runs as the same user and can read what that user can.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

# The program that runs the code: it reads a one-time token on stdin, runs the code with
# stdout/stderr swallowed, and prints the token only if the code ran to its end. So code
# that exits early with status 0 (sys.exit(0), os._exit(0)) does not pass.
_HARNESS = r"""
import sys, io, os
token = sys.stdin.readline().strip()
sys.stdin.close()
out = os.dup(1)
src = open("program.py", encoding="utf-8").read()
sys.stdout = sys.stderr = io.StringIO()
try:
    exec(compile(src, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except BaseException as exc:
    msg = f"{type(exc).__name__}: {exc}"[:500]
    os.write(2, msg.encode("utf-8", "replace"))
    os._exit(1)
os.write(out, ("\n" + token + "\n").encode())
os._exit(0)
"""


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    passed: bool
    result: str  # "passed" | "timed out" | "failed: <why>"


@lru_cache(maxsize=1)
def _libc_unshare():
    """unshare(2), looked up in the parent: a child between fork and exec must not dlopen
    (another thread may have held the loader's lock at the fork)."""
    return ctypes.CDLL(None, use_errno=True).unshare


def _unshare(flags: int) -> bool:
    return _libc_unshare()(ctypes.c_int(flags)) == 0


@lru_cache(maxsize=1)
def network_isolated() -> bool:
    """Whether a child can be put in a network namespace of its own here (tried once, in a
    throwaway child)."""
    _libc_unshare()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = _unshare(CLONE_NEWNET) or _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _confine(limits: Limits, isolate: bool) -> None:  # pragma: no cover - in the child
    """Runs in the child between fork and exec: async-signal-safe enough (no locks held)."""
    os.setsid()  # its own process group, killed as a whole on timeout
    if isolate and not _unshare(CLONE_NEWNET):
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    cpu = max(1, int(limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def run_python(program: str, limits: Limits = Limits()) -> Outcome:
    """Runs ``program`` as a script; passed when it runs to its end without raising."""
    folder = tempfile.mkdtemp(prefix="modelmart-sandbox-")
    token = secrets.token_hex(16)
    try:
        with open(os.path.join(folder, "program.py"), "w", encoding="utf-8") as f:
            f.write(program)
        isolate = network_isolated()
        _libc_unshare()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", _HARNESS, cwd=folder,
            env={"HOME": folder, "TMPDIR": folder, "LC_ALL": "C.UTF-8"},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, preexec_fn=lambda: _confine(limits, isolate))
        try:
            out, err = await asyncio.wait_for(proc.communicate(token.encode() + b"\n"),
                                              limits.timeout_s)
        except asyncio.TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            return Outcome(False, "timed out")
        finally:
            _kill_group(proc.pid)  # whatever it left running
        if proc.returncode == 0 and out.rstrip().endswith(token.encode()):
            return Outcome(True, "passed")
        if proc.returncode == -signal.SIGXCPU or proc.returncode == -signal.SIGKILL:
            return Outcome(False, "timed out")
        why = err.decode("utf-8", "replace").strip().splitlines()
        return Outcome(False, "failed: " + (why[-1] if why else f"exit status {proc.returncode}"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
