"""The deployment files of ``deploy/`` and the repository's Dockerfile, read as the tools
that use them would."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from modelmart.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose() -> dict:
    """deploy/compose.yaml, anchors and merge keys resolved (PyYAML does both)."""
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""
    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def serve_args(argv: list[str]):
    """A ``modelmart`` command line parsed by the real CLI's parser (a typo fails here)."""
    return build_parser().parse_args(argv)


def systemd_exec_start() -> list[str]:
    text = (DEPLOY / "modelmart.service").read_text().replace("\\\n", " ")
    line = next(l for l in text.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def unit_value(name: str) -> str:
    for line in (DEPLOY / "modelmart.service").read_text().splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1]
    raise KeyError(name)


def nginx_binary() -> str:
    """Debian's nginx; a test without it is skipped on a developer's machine, but fails
    in CI, where scripts/test.sh installs it."""
    import os
    import shutil

    import pytest

    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.path.exists(p)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing in CI: scripts/test.sh installs it (apt)")
        pytest.skip("nginx is not installed (scripts/test.sh installs it: apt-get install nginx)")
    return found
