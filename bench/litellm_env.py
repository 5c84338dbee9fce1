"""LiteLLM's proxy lives in its own virtualenv (created once under a cache dir, then reused),
so its many pinned dependencies never touch modelmart's environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procs import NotAvailable

DEFAULT_VENV = Path.home() / ".cache" / "modelmart-bench" / "litellm-venv"
INSTALL_TIMEOUT = 1200  # seconds; a first install downloads a few hundred MB


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def version(venv: Path) -> str | None:
    if not _python(venv).exists():
        return None
    done = subprocess.run([str(_python(venv)), "-c",
                           "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure(venv: Path) -> Path:
    """The ``litellm`` executable, installing ``litellm[proxy]`` on first use."""
    exe = venv / "bin" / "litellm"
    if exe.exists() and version(venv):
        return exe
    print(f"  installing litellm[proxy] into {venv} (once; a few minutes)...", flush=True)
    log = venv.parent / "litellm-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as out:
            steps = [[sys.executable, "-m", "venv", str(venv)],
                     [str(_python(venv)), "-m", "pip", "install", "-q", "litellm[proxy]"]]
            for argv in steps:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=INSTALL_TIMEOUT)
                if done.returncode != 0:
                    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                    raise NotAvailable(f"install failed ({' '.join(argv[-2:])}): {tail[0][:200]}")
    except subprocess.TimeoutExpired:
        raise NotAvailable(f"install timed out after {INSTALL_TIMEOUT} s") from None
    if not exe.exists():
        raise NotAvailable(f"installed, but {exe} is missing")
    return exe
