"""Helpers for the marketplace acceptance tests: a priced catalog, polling, the ledger seen
from outside the gateway, the real CLI and `modelmart serve` as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

from modelmart.store.base import open_store
from tests.fakes.script import free_port
from tests.pg import run_async

UPSTREAM_KEY = "sk-upstream-test"
M = 10**6  # picodollars per token for a price of 1 USD per million tokens

# Provider costs and customer list prices, USD per million tokens.
OA_COST = {"input": "1.00", "output": "4.00", "cache_read": "0.25", "cache_write": "1.25"}
OA_LIST = {"input": "2.00", "output": "8.00", "cache_read": "0.50", "cache_write": "2.50"}
AN_COST = {"input": "3.00", "output": "15.00", "cache_read": "0.30", "cache_write": "3.75"}
AN_LIST = {"input": "4.00", "output": "20.00", "cache_read": "0.40", "cache_write": "5.00"}


def priced_catalog(fake_openai, fake_anthropic) -> dict:
    """Every model has an explicit provider cost per deployment and an explicit customer price."""
    oa = {"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake_openai.base_url}/v1",
          "api_key": UPSTREAM_KEY, "cost": OA_COST}
    an = {"provider": "anthropic", "model": "claude-sonnet-4-5",
          "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY, "cost": AN_COST}
    return {
        "bundled_model": False,
        "models": {
            "oa-list": {**oa, "price": OA_LIST},
            "oa-markup": {**oa, "price": {"markup": "0.1"}},
            "an-list": {**an, "price": AN_LIST},
            "an-markup": {**an, "price": {"markup": "0.25"}},
            # Picodollar-sized rates, to see the markup's rounding (half up, to 1 pico).
            "oa-odd": {**oa, "cost": {"input": "0.000001", "output": "0.000003",
                                      "cache_read": "0.000001", "cache_write": "0.000001"},
                       "price": {"markup": "0.25"}},
            # No cost anywhere (not in the price book either) and no list price.
            "mystery": {"provider": "openai-compatible", "model": "mystery-model-x",
                        "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY},
        },
    }


def poll(fn: Callable[[], Any], timeout: float = 2.0, interval: float = 0.02, what: str = ""):
    """Calls ``fn`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}")
        time.sleep(interval)


# ---- the ledger, read from the database ------------------------------------------------

async def _with_store(url: str, fn):
    store = await open_store(url)
    try:
        return await fn(store)
    finally:
        await store.close()


def get_usage(url: str, request_id: str):
    return run_async(_with_store(url, lambda s: s.get_usage(request_id)))


def wait_usage(url: str, request_id: str, timeout: float = 2.0):
    """The ledger row of ``request_id`` once the batched writer has stored it."""
    return poll(lambda: get_usage(url, request_id), timeout, 0.05, f"ledger row {request_id}")


def all_usage(url: str) -> list:
    return run_async(_with_store(url, lambda s: s.usage_rows()))


def insert_usage(url: str, records: list) -> int:
    return run_async(_with_store(url, lambda s: s.insert_usage(records)))


def create_customer(url: str, name: str, **limits):
    from modelmart.tenancy import accounts
    return run_async(_with_store(url, lambda s: accounts.create_customer(s, name, **limits)))


def ensure_admin_key(url: str) -> str:
    from modelmart.tenancy import accounts
    return run_async(_with_store(url, accounts.ensure_admin_key))


# ---- the CLI -------------------------------------------------------------------------

def cli(*args: str, cwd: str | None = None, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "modelmart.cli.main", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=60)
    if check:
        assert proc.returncode == 0, f"modelmart {' '.join(args)} failed:\n{proc.stderr}"
    return proc


def cli_json(*args: str, **kw) -> Any:
    return json.loads(cli(*args, "--json", **kw).stdout)


def cli_key(database: str, customer: str, *extra: str) -> dict:
    """``modelmart keys create --json``: the key's view with its secret."""
    return cli_json("keys", "create", "--customer", customer, *extra, "--database", database)


# ---- `modelmart serve` as a subprocess ----------------------------------------------------

def write_config(folder: Path, catalog: dict) -> Path:
    path = folder / "modelmart.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


class ServeProcess:
    """``modelmart serve`` in its own process group, cwd ``folder``, logs in ``folder``."""

    def __init__(self, folder: Path, config: Path, database: str, *, workers: int = 1,
                 env: dict | None = None, journal_dir: Path | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.log_path = folder / f"serve-{self.port}.log"
        full_env = {**os.environ, "MODELMART_JOURNAL_DIR": str(journal_dir or folder / "journal"),
                    **(env or {})}
        for name in ("MODELMART_REDIS_URL", "MODELMART_COORDINATOR_SOCKET"):
            if name not in (env or {}):
                full_env.pop(name, None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelmart.cli.main", "serve", "--config", str(config),
             "--database", database, "--port", str(self.port), "--workers", str(workers),
             "--log-level", "warning", *(extra_args or [])],
            cwd=folder, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 30.0) -> "ServeProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"modelmart serve exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"modelmart serve did not become ready:\n{self.log()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own group: the workers too
                self.proc.wait(10)
        self._log.close()


def month_of(ts: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(ts))


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def run(coro):
    return asyncio.run(coro)


def fresh_key(gateway, customer: str = "acme", **options) -> str:
    """A new key on an in-process GatewayServer, once its key cache has loaded it."""
    secret = gateway.new_key(customer, **options)
    poll(lambda: gateway.app.keys.lookup(secret), 2.0, 0.02, "the key cache to load a new key")
    return secret
