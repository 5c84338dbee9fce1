"""The systems under load. Each target starts its server on a free loopback port and says
where to send requests; the orchestrator stops it (its whole process group) afterwards.

Gateways get these models: ``gpt-4o-mini`` (the JSON upstream), ``gpt-4o-mini-stream`` (the
real-shape SSE upstream), ``gpt-4o-mini-simple`` (the simplified chunks),
``gpt-4o-mini-long`` (500 chunks) and ``bench-slow`` (the slow upstream that holds streams
open); modelmart also ``claude-bench`` (an Anthropic upstream).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import litellm_env
import modes
from procs import HOST, NotAvailable, Processes, free_port, wait_listening
from upstream import (ANTHROPIC_PATH, ANTHROPIC_PREFIX, CHAT_PATH, LONG_PREFIX, MODEL,
                      SIMPLE_PREFIX, STREAM_PREFIX, passthrough_conf, start_nginx)

BENCH_DIR = Path(__file__).resolve().parent
FAKE_KEY = "sk-fake-bench-key"
LITELLM_MASTER_KEY = "sk-bench-master-" + "0" * 32  # LiteLLM refuses to start without one
# USD per million tokens; a gateway that refuses unpriced models needs one.
PRICE = {"input": 0.15, "output": 0.60, "cache_read": 0.075, "cache_write": 0.15}


@dataclass
class Context:
    procs: Processes
    workdir: Path
    upstream_port: int
    upstream_proc: subprocess.Popen
    slow_port: int | None
    litellm_venv: Path


@dataclass
class Running:
    port: int
    proc: subprocess.Popen
    routes: dict[str, tuple[str, str]]  # mode (see modes.py) or "slow" -> (path, model)
    headers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    owned: bool = True  # False: shared with other targets, not stopped after its runs
    log: Path | None = None
    key: str | None = None  # its client key, for dialects that carry it elsewhere
    aws: tuple[str, str] | None = None  # an AWS-style key id and secret (SigV4)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True)
class Target:
    name: str  # what --only takes
    label: str  # what the table shows
    start: Callable[[Context], Running]
    open_streams_check: bool = False  # part of the 1,000-open-streams memory check
    main_only: bool = False  # only the main modes (json, stream), not issue 15's others


def _gateway_routes() -> dict[str, tuple[str, str]]:
    return {"json": (CHAT_PATH, MODEL), "stream": (CHAT_PATH, f"{MODEL}-stream"),
            "stream-simple": (CHAT_PATH, f"{MODEL}-simple"), "long": (CHAT_PATH, f"{MODEL}-long"),
            "big": (CHAT_PATH, MODEL), "slow": (CHAT_PATH, "bench-slow")}


def _direct_routes() -> dict[str, tuple[str, str]]:
    return {"json": (CHAT_PATH, MODEL), "stream": (STREAM_PREFIX + CHAT_PATH, MODEL),
            "stream-simple": (SIMPLE_PREFIX + CHAT_PATH, MODEL),
            "long": (LONG_PREFIX + CHAT_PATH, MODEL), "big": (CHAT_PATH, MODEL)}


def _upstream_urls(ctx: Context) -> dict[str, str]:
    """model id -> upstream base URL (ending in /v1)."""
    up = f"http://{HOST}:{ctx.upstream_port}"
    urls = {MODEL: f"{up}/v1", f"{MODEL}-stream": f"{up}{STREAM_PREFIX}/v1",
            f"{MODEL}-simple": f"{up}{SIMPLE_PREFIX}/v1", f"{MODEL}-long": f"{up}{LONG_PREFIX}/v1"}
    if ctx.slow_port:
        urls["bench-slow"] = f"http://{HOST}:{ctx.slow_port}/v1"
    return urls


# ---- (1) the upstream itself, (2) nginx pass-through -------------------------------------
def start_direct(ctx: Context) -> Running:
    return Running(ctx.upstream_port, ctx.upstream_proc, _direct_routes(), owned=False,
                   notes=["nginx 1 worker, fixed bodies: the reference for 'added' figures"])


def start_nginx_proxy(ctx: Context) -> Running:
    port = free_port()
    conf = passthrough_conf(ctx.workdir / "nginx-proxy", port, ctx.upstream_port)
    proc = start_nginx(ctx.procs, ctx.workdir, "nginx-proxy", conf, port)
    return Running(port, proc, _direct_routes(), notes=["proxy_pass, keepalive upstream, 1 worker"])


# ---- (3) the minimal Python pass-through ------------------------------------------------
def start_passthrough(ctx: Context) -> Running:
    port = free_port()
    routes = {m: base + "/chat/completions" for m, base in _upstream_urls(ctx).items()}
    log = ctx.workdir / "passthrough.log"
    proc = ctx.procs.start([sys.executable, str(BENCH_DIR / "passthrough.py"), "--port", str(port),
                            "--routes", json.dumps(routes)], log)
    wait_listening(port, proc, timeout=30, log=log)
    return Running(port, proc, _gateway_routes(), log=log,
                   notes=["aiohttp server + client session, orjson, 1 process"])


# ---- (4) LiteLLM ------------------------------------------------------------------------
def start_litellm(ctx: Context) -> Running:
    exe = litellm_env.ensure(ctx.litellm_venv)  # raises NotAvailable with the reason
    models = [{"model_name": m, "litellm_params": {"model": f"openai/{MODEL}", "api_base": base,
                                                   "api_key": FAKE_KEY}}
              for m, base in _upstream_urls(ctx).items()]
    config = {"model_list": models,
              "general_settings": {"master_key": LITELLM_MASTER_KEY},
              "litellm_settings": {"drop_params": True, "set_verbose": False,
                                   "telemetry": False}}
    path = ctx.workdir / "litellm.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_TELEMETRY="False", NO_DOCS="True", DISABLE_ADMIN_UI="True",
               # its default of 500 connections per upstream host would cap the streams check
               AIOHTTP_CONNECTOR_LIMIT="4000", AIOHTTP_CONNECTOR_LIMIT_PER_HOST="4000")
    log = ctx.workdir / "litellm.log"
    proc = ctx.procs.start([str(exe), "--config", str(path), "--host", HOST, "--port", str(port),
                            "--num_workers", "1"], log, env=env, cwd=ctx.workdir)
    wait_listening(port, proc, timeout=180, log=log)
    return Running(port, proc, _gateway_routes(), log=log,
                   headers={"authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                   notes=[f"litellm {litellm_env.version(ctx.litellm_venv)}, 1 worker, "
                          "no DB, master key as the client key, upstream pool raised to 4000"])


# ---- (5), (6) modelmart -----------------------------------------------------------------
def _modelmart_cmd() -> list[str]:
    return [sys.executable, "-m", "modelmart.cli.main"]


def modelmart_has_keys() -> bool:
    """The auth/limits/metering work adds ``modelmart keys``; use auth once it exists."""
    probe = subprocess.run(_modelmart_cmd() + ["keys", "--help"], capture_output=True)
    return probe.returncode == 0


def _modelmart_catalog(ctx: Context, path: Path) -> None:
    lines = ["bundled_model: false", "models:"]
    up = f"http://{HOST}:{ctx.upstream_port}"
    models = [(m, "openai-compatible", base, MODEL) for m, base in _upstream_urls(ctx).items()]
    models.append((ANTHROPIC_MODEL, "anthropic", up + ANTHROPIC_PREFIX, "claude-3-5-haiku-20241022"))
    for model_id, provider, base, upstream_model in models:
        lines += [f"  {model_id}:",
                  f"    provider: {provider}",
                  f"    base_url: {base}",
                  f"    model: {upstream_model}",
                  f"    api_key: {FAKE_KEY}"]
        if modelmart_priced():
            lines += [f"    price: {json.dumps(PRICE)}", f"    cost: {json.dumps(PRICE)}"]
    path.write_text("\n".join(lines) + "\n")


ANTHROPIC_MODEL = "claude-bench"


def modelmart_priced() -> bool:
    """Prices go in the catalog only when the loader knows the keys (metering has landed)."""
    from modelmart.catalog import loader

    return "price" in getattr(loader, "_MODEL_KEYS", ()) and "cost" in getattr(
        loader, "_DEPLOYMENT_KEYS", ())


def _create_key(env: dict[str, str], log: Path) -> dict:
    def run(argv: list[str]) -> str:
        done = subprocess.run(_modelmart_cmd() + argv, capture_output=True, text=True, env=env,
                              timeout=60)
        with open(log, "a") as out:
            out.write(f"$ modelmart {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            raise NotAvailable(f"`modelmart {' '.join(argv[:2])}` failed: "
                               f"{(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout

    run(["customers", "create", "bench"])
    out = run(["keys", "create", "--customer", "bench", "--aws",
               *([] if os.environ.get("BENCH_NO_RPM") else ["--rpm", "1000000"]), "--json"])
    try:
        key = json.loads(out)
        key["secret"]
        return key
    except (ValueError, KeyError) as exc:
        raise NotAvailable(f"`modelmart keys create --json` printed no secret: {exc}") from None


def _base_source(workdir: Path) -> tuple[Path, str]:
    """The ``src`` folder of the commit in ``BENCH_BASE_REF`` (``run.py --base REF``),
    exported with ``git archive`` into the run's folder; and the commit's short id."""
    ref = os.environ.get("BENCH_BASE_REF")
    if not ref:
        raise NotAvailable("no base commit to compare with (run.py --base REF)")
    repo = BENCH_DIR.parent
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        raise NotAvailable(f"unknown commit {ref!r}: {rev.stderr.strip()}")
    tree = Path(tempfile.mkdtemp(prefix="modelmart-base-", dir=workdir))
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree / "src", rev.stdout.strip()


def _start_redis(ctx: Context, home: Path) -> str:
    """A Redis of the run's own (no persistence, ``noeviction`` as the README asks)."""
    if shutil.which("redis-server") is None:
        raise NotAvailable("redis-server is not installed (Debian: redis-server)")
    port = free_port()
    log = home / "redis.log"
    proc = ctx.procs.start(["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                            "--appendonly", "no", "--dir", str(home),
                            "--maxmemory-policy", "noeviction"], log)
    wait_listening(port, proc, timeout=30, log=log)
    return f"redis://{HOST}:{port}/0"


def start_modelmart(workers: int, base: bool = False,
                    redis: bool = False) -> Callable[[Context], Running]:
    """``modelmart serve``: this checkout's, or (``base``) the commit ``--base`` names, run
    from its own source with the same settings, so a run pairs the two; with ``redis``, its
    limits and budgets in a Redis of its own (as replicas share them)."""
    def start(ctx: Context) -> Running:
        home = Path(tempfile.mkdtemp(prefix=f"modelmart-w{workers}-", dir=ctx.workdir))
        catalog = home / "modelmart.yaml"
        _modelmart_catalog(ctx, catalog)
        env = dict(os.environ, MODELMART_DATABASE_URL=f"sqlite:///{home / 'modelmart.db'}")
        log = home / "modelmart.log"
        headers, notes = {}, [f"{workers} worker{'s' if workers > 1 else ''}, its own server and "
                              "upstream client (uvloop + httptools)"]
        if redis:
            env["MODELMART_REDIS_URL"] = _start_redis(ctx, home)
            notes.append("rate limits and budgets in Redis (leased quota)")
        if base:
            src, rev = _base_source(ctx.workdir)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src),
                                                              env.get("PYTHONPATH")]))
            notes.insert(0, f"commit {rev}")
        key = {}
        if modelmart_has_keys():
            key = _create_key(env, log)
            headers["authorization"] = "Bearer " + key["secret"]
            notes.append("auth, rate limits and metering on (key via the CLI)")
        else:
            notes.append("no auth yet (`modelmart keys` does not exist)")
        port = free_port()
        proc = ctx.procs.start(_modelmart_cmd() + ["serve", "--config", str(catalog), "--host", HOST,
                                                   "--port", str(port), "--workers", str(workers),
                                                   "--log-level", "warning"], log, env=env, cwd=home)
        wait_listening(port, proc, timeout=60, log=log)
        routes = _gateway_routes()
        routes["anthropic"] = (ANTHROPIC_PATH, f"{MODEL}-stream")
        routes["bedrock"] = (f"/model/{ANTHROPIC_MODEL}/converse-stream", ANTHROPIC_MODEL)
        aws = ((key["aws_access_key_id"], key["aws_secret_access_key"])
               if "aws_secret_access_key" in key else None)
        return Running(port, proc, routes, headers=headers, notes=notes, log=log,
                       key=key.get("secret"), aws=aws)

    return start


TARGETS = [
    Target("upstream", "upstream (direct)", start_direct),
    Target("nginx", "nginx pass-through", start_nginx_proxy),
    Target("passthrough", "minimal Python pass-through", start_passthrough, open_streams_check=True),
    Target("litellm", "LiteLLM proxy", start_litellm, open_streams_check=True),
    Target("modelmart", "modelmart (1 worker)", start_modelmart(1), open_streams_check=True),
    Target("modelmart-w2", "modelmart (2 workers)", start_modelmart(2), main_only=True),
    Target("modelmart-redis", "modelmart, limits in Redis (1 worker)",
           start_modelmart(1, redis=True), main_only=True),
    # Only with --base REF: the same gateway at an earlier commit, in the same run.
    Target("modelmart-base", "modelmart at --base (1 worker)", start_modelmart(1, base=True),
           open_streams_check=True),
]


def mode_request(run: Running, mode: str) -> tuple[str, str, dict[str, str]]:
    """(path, body, headers) of a ``mode`` request to ``run``."""
    path, model = run.routes[mode]
    return modes.request(mode, path, model, run.key, run.aws, f"{HOST}:{run.port}", run.headers)


def _request(run: Running, mode: str) -> bytes:
    path, body, headers = mode_request(run, mode)
    req = urllib.request.Request(run.base_url + path, data=body.encode(),
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.read()
    except OSError as exc:  # HTTPError included
        detail = exc.read()[:300].decode(errors="replace") if hasattr(exc, "read") else ""
        raise RuntimeError(f"{mode} request failed: {exc} {detail}") from None


def smoke_check(run: Running, wanted: tuple[str, ...] = ("json", "stream")) -> float:
    """A request of each mode wanted that ``run`` serves must succeed before any load is
    sent. Returns the best of a few idle JSON round trips (seconds), the baseline for
    ``settle``."""
    for mode in wanted:
        if mode not in run.routes:
            continue
        data = _request(run, mode)
        if modes.MODES[mode].expect not in data:
            raise RuntimeError(f"{mode} smoke request: unexpected reply {data[:300]!r}")
    return min(_timed(run) for _ in range(5))


def _timed(run: Running) -> float:
    start = time.perf_counter()
    _request(run, "json")
    return time.perf_counter() - start


def settle(run: Running, baseline: float, limit: float = 60.0) -> float:
    """Wait until the target is idle again: a slow server still works through the requests
    wrk abandoned, which would otherwise be charged to the next cell. Returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if _timed(run) <= max(5 * baseline, 0.02):
            break
        time.sleep(0.2)
    return time.perf_counter() - start
