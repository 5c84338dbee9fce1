"""modelmart's speed benchmark (issue #6): one command, one machine, one run.

Starts a fake upstream (nginx with fixed bodies in the providers' real shapes) and the
targets on free loopback ports: the upstream itself, an nginx pass-through, a minimal Python
pass-through, LiteLLM's proxy, and modelmart with 1 and 2 workers. Each gets the same wrk
load at fixed concurrency levels, JSON and streaming, the targets taking turns cell by cell
(so load from outside the benchmark on a shared machine falls on all of them alike); then
issue 15's real traffic at concurrency 16 (the simplified chunks the bench used to send, 500
chunks, a 200 KB prompt, an Anthropic client on an OpenAI upstream, Bedrock ConverseStream
on an Anthropic upstream: see modes.py); then a time-to-first-token probe, for the Python
gateways a 1,000-open-streams memory check, and the bundled model through the gateway
against llama-cpp-python alone (local_model.py). Everything started is stopped at the end,
also on Ctrl-C or failure. The table is printed and written to docs/benchmarks.md.

    python bench/run.py                  # full run, about 20 minutes
    python bench/run.py --quick          # 3 s cells, a smoke test of the whole thing
    python bench/run.py --only modelmart,litellm --concurrency 1,16
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402
import quiet  # noqa: E402
import report  # noqa: E402
import ttft  # noqa: E402
import wrk  # noqa: E402
import local_model  # noqa: E402
from litellm_env import DEFAULT_VENV  # noqa: E402
from modes import DEFAULT_MODES, EXTRA_CONCURRENCY, MODES  # noqa: E402
from procs import HOST, NotAvailable, Processes, free_port, wait_listening  # noqa: E402
from targets import (TARGETS, Context, Running, Target, mode_request, settle,  # noqa: E402
                     smoke_check)
from upstream import nginx_available, start_upstream  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SLOW_CHUNKS, SLOW_INTERVAL = 45, 1.0  # the slow upstream holds each stream open 45 s


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [t.name for t in TARGETS]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="targets: " + ", ".join(names))
    p.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-up, 50 TTFT requests, 2 s quiet wait")
    p.add_argument("--duration", type=int, help="seconds per measured cell (default 10; quick 3)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up before each cell (default 2; quick 1)")
    p.add_argument("--concurrency", default="1,16,256", help="comma-separated (default 1,16,256)")
    p.add_argument("--only", help="comma-separated targets (the upstream always runs: it is the reference)")
    p.add_argument("--modes", default=DEFAULT_MODES,
                   help=f"comma-separated, of {DEFAULT_MODES} (default: all); all but json and "
                        "stream run at concurrency 16 only")
    p.add_argument("--local-rounds", type=int, default=5,
                   help="rounds of the bundled model against llama-cpp-python alone (0: skip)")
    p.add_argument("--local-tokens", type=int, default=256, help="tokens a round generates")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leaves a core to the target)")
    p.add_argument("--ttft-requests", type=int, help="sequential streams for TTFT (default 200; quick 50)")
    p.add_argument("--streams", type=int, default=1000, help="open streams for the memory check (0: skip)")
    p.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave docs/ alone")
    p.add_argument("--quiet-wait", type=float,
                   help="seconds a cell may wait for other processes to leave the CPU (default 10; quick 2)")
    p.add_argument("--litellm-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with every server's log")
    p.add_argument("--base", metavar="REF",
                   help="also run modelmart at this commit (target modelmart-base), cell by "
                        "cell beside this checkout's, and report the change")
    args = p.parse_args(argv)
    if args.base:
        os.environ["BENCH_BASE_REF"] = args.base
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.ttft_requests = args.ttft_requests or (50 if args.quick else 200)
    if args.quiet_wait is None:
        args.quiet_wait = 2.0 if args.quick else 10.0
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.concurrency or any(c < 1 for c in args.concurrency):
        p.error("--concurrency takes positive integers, e.g. 1,16,256")
    if set(args.modes) - set(MODES) or not args.modes:
        p.error(f"--modes takes some of {DEFAULT_MODES}")
    wanted = set(args.only.split(",")) if args.only else set(names) - {"modelmart-base"}
    if args.base:
        wanted.add("modelmart-base")
    elif "modelmart-base" in wanted:
        p.error("the modelmart-base target needs --base REF")
    unknown = wanted - set(names)
    if unknown:
        p.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    args.targets = [t for t in TARGETS if t.name in wanted | {"upstream"}]
    return args


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def start_slow_upstream(procs: Processes, workdir: Path) -> int:
    port = free_port()
    log = workdir / "slow-upstream.log"
    proc = procs.start([sys.executable, str(BENCH_DIR / "slow_upstream.py"), "--port", str(port),
                        "--chunks", str(SLOW_CHUNKS), "--interval", str(SLOW_INTERVAL)], log)
    wait_listening(port, proc, timeout=30, log=log)
    return port


def measure_cell(run: Running, url: str, script: Path, conc: int, args, idle: float) -> dict:
    """Warm up, wait for a quiet machine, measure one cell, let the target settle."""
    if args.warmup > 0:
        wrk.run(url, script, conc, args.warmup, args.threads)
        settle(run, idle)
    quiet_wait, _ = quiet.wait_for_quiet(max_wait=args.quiet_wait)
    meter, cpu0 = quiet.Meter(), memory.tree_cpu_seconds(run.proc.pid)
    res = wrk.run(url, script, conc, args.duration, args.threads)
    cpu = memory.tree_cpu_seconds(run.proc.pid) - cpu0
    others = meter.foreign_cores()
    settled = settle(run, idle)
    return {"concurrency": conc, "rps": round(res.rps, 1), "p50_ms": round(res.p50_ms, 3),
            "p99_ms": round(res.p99_ms, 3), "errors": res.errors, "requests": res.requests,
            "cpu_us_per_req": round(1e6 * cpu / res.requests, 1) if res.requests else None,
            "others_cores": None if others is None else round(others, 2),
            "quiet_wait_s": round(quiet_wait, 1), "settled_s": round(settled, 1)}


def _cell_line(cell: dict) -> str:
    notes = [f"others used {cell['others_cores']:.2f} cores" if (cell["others_cores"] or 0) >= 0.2 else "",
             f"waited {cell['quiet_wait_s']:.0f} s for quiet" if cell["quiet_wait_s"] > 2 else "",
             f"settled in {cell['settled_s']:.1f} s" if cell["settled_s"] > 1 else ""]
    notes_text = ", ".join(n for n in notes if n)
    return (f" {cell['rps']:9.0f} req/s  "
            f"p50 {cell['p50_ms']:8.2f} ms  p99 {cell['p99_ms']:8.2f} ms  "
            f"CPU {cell['cpu_us_per_req'] or 0:6.0f} us/req  errors {cell['errors']}"
            + (f"  ({notes_text})" if notes_text else ""))


class Live:
    """A started target: its server, its idle baseline, its RSS sampler, its table entry."""

    def __init__(self, target: Target, run: Running, idle: float, entry: dict) -> None:
        self.target, self.run, self.idle, self.entry = target, run, idle, entry
        self.sampler = memory.RssSampler(run.proc.pid, interval=0.25).__enter__()
        self.scripts: dict[str, Path] = {}

    def fail(self, exc: Exception) -> None:
        self.entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        print(f"  {self.target.name} failed: {exc}" + (f" (log: {self.run.log})" if self.run.log else ""))


def start_target(target: Target, ctx: Context, results: dict, modes: list[str]) -> Live | None:
    entry = results["targets"][target.name] = {"label": target.label, "status": "ok"}
    try:
        run = target.start(ctx)
    except NotAvailable as exc:
        entry.update(status="not available", reason=str(exc))
        print(f"  {target.name}: not available: {exc}")
        return None
    except Exception as exc:
        entry.update(status="failed to start", reason=str(exc).splitlines()[0][:300])
        print(f"  {target.name}: failed to start: {exc}")
        return None
    entry["notes"] = run.notes
    try:
        idle = smoke_check(run, tuple(m for m in modes if m in target_modes(target, run)))
    except Exception as exc:
        entry.update(status="failed", reason=str(exc)[:300])
        print(f"  {target.name}: smoke check failed: {exc}")
        if run.owned:
            ctx.procs.stop(run.proc)
        return None
    print(f"  {target.name} on port {run.port} ({'; '.join(run.notes)})", flush=True)
    return Live(target, run, idle, entry)


def target_modes(target: Target, run: Running) -> list[str]:
    """The modes a target runs: those it has a route for (the pass-throughs cannot translate
    between dialects), and only the main ones for a target marked so."""
    return [m for m in MODES if m in run.routes and (MODES[m].main or not target.main_only)]


def load_all(lives: list[Live], args, results: dict, workdir: Path) -> None:
    """Every mode at every concurrency (issue 15's modes at 16 only), the targets taking
    turns cell by cell, so that load from outside the benchmark falls on all of them alike.
    A cell's wrk script is written just before it runs (a SigV4 signature is good for 15
    minutes)."""
    for mode in args.modes:
        concurrency = args.concurrency if MODES[mode].main else EXTRA_CONCURRENCY
        for conc in concurrency:
            print(f"\n== {mode}, concurrency {conc}", flush=True)
            for live in lives:
                if live.entry["status"] != "ok" or mode not in target_modes(live.target, live.run):
                    continue
                path, body, headers = mode_request(live.run, mode)
                script = wrk.write_script(workdir / f"{live.target.name}-{mode}.lua", path, body,
                                          headers)
                try:
                    cell = measure_cell(live.run, live.run.base_url + path, script, conc, args,
                                        live.idle)
                except Exception as exc:
                    live.fail(exc)
                    continue
                results["cells"].append({"target": live.target.name, "mode": mode, **cell})
                print(f"  {live.target.name:13}" + _cell_line(cell), flush=True)


def probe_ttft(live: Live, args) -> None:
    path, body, headers = mode_request(live.run, "stream")
    try:
        live.entry["ttft"] = ttft.measure(live.run.base_url + path, body, headers,
                                          args.ttft_requests)
    except Exception as exc:
        live.fail(exc)
        return
    t = live.entry["ttft"]
    print(f"  {live.target.name:13} TTFT p50 {t['p50_ms']:.3f} ms  p99 {t['p99_ms']:.3f} ms")


def check_open_streams(live: Live, args) -> None:
    path, model = live.run.routes["slow"]
    try:
        check = memory.open_streams(live.run.base_url + path, wrk.chat_body(model, True),
                                    live.run.headers, args.streams, live.run.proc.pid,
                                    deadline_s=SLOW_CHUNKS * SLOW_INTERVAL - 5)
    except Exception as exc:  # a gateway that falls over here still has its table row
        check = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    live.entry["open_streams"] = check
    print(f"  {live.target.name:13} {check}", flush=True)


def compare_local_model(ctx: Context, args, results: dict) -> None:
    """The bundled model's tokens/s through the gateway against llama-cpp-python alone
    (``local_model.py``), after the load, when nothing else of the bench runs."""
    print(f"\n== the bundled model: gateway vs llama-cpp-python alone, {args.local_rounds} rounds "
          f"of {args.local_tokens} tokens", flush=True)
    try:
        results["local_model"] = local_model.compare(
            args.local_rounds, args.local_tokens, ctx.workdir, ctx.procs)
    except Exception as exc:  # the load's figures stand without it
        results["local_model"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"  failed: {exc}", flush=True)


def bench_all(ctx: Context, args, results: dict) -> None:
    print("\n== starting targets", flush=True)
    lives = [live for t in args.targets if (live := start_target(t, ctx, results, args.modes)) is not None]
    try:
        load_all(lives, args, results, ctx.workdir)
        if "stream" in args.modes:
            print("\n== time to first token", flush=True)
            for live in lives:
                if live.entry["status"] == "ok":
                    probe_ttft(live, args)
        for live in lives:  # the load's peak, before the open-streams check
            live.entry["peak_rss_mb"] = round(live.sampler.take_peak(), 1)
            live.sampler.__exit__()
        if args.streams and ctx.slow_port:
            print(f"\n== {args.streams} open streams", flush=True)
            for live in lives:
                if live.target.open_streams_check and live.entry["status"] == "ok":
                    check_open_streams(live, args)
        if args.local_rounds:
            compare_local_model(ctx, args, results)
    finally:
        for live in lives:
            live.sampler.__exit__()
            if live.run.owned:
                ctx.procs.stop(live.run.proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool, why in (("wrk", "apt-get install wrk"), ("nginx", "apt-get install nginx")):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is required ({why})", file=sys.stderr)
            return 2
    assert nginx_available() is None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGHUP, _raise_on_sigterm)
    nofile = memory.raise_open_files_limit()
    if args.streams and nofile < 4 * args.streams:
        print(f"bench: open-files limit {nofile} is low for {args.streams} streams", file=sys.stderr)
    command = "python bench/run.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    results = {"meta": report.collect_meta(command, args.litellm_venv), "targets": {}, "cells": [],
               "concurrency": args.concurrency, "modes": args.modes, "duration": args.duration,
               "warmup": args.warmup, "threads": args.threads, "ttft_requests": args.ttft_requests,
               "streams": args.streams, "streams_deadline_s": SLOW_CHUNKS * SLOW_INTERVAL - 5,
               "quiet_wait": args.quiet_wait}
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="modelmart-bench-"))
    started = time.monotonic()
    try:
        up_port, up_proc = start_upstream(procs, workdir)
        slow_port = None
        if args.streams and any(t.open_streams_check for t in args.targets):
            slow_port = start_slow_upstream(procs, workdir)
        print(f"upstream on {HOST}:{up_port}" + (f", slow upstream on {slow_port}" if slow_port else "")
              + f"; logs in {workdir}", flush=True)
        ctx = Context(procs, workdir, up_port, up_proc, slow_port, args.litellm_venv)
        bench_all(ctx, args, results)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything; no report written", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["versions"]["litellm"] = report.litellm_env.version(args.litellm_venv)
    results["meta"]["seconds"] = round(time.monotonic() - started)
    # latest.json always holds the figures behind docs/benchmarks.md
    saved = BENCH_DIR / "results" / ("latest-no-write.json" if args.no_write else "latest.json")
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(results, indent=1))
    print(report.console(results))
    print(f"\n{results['meta']['seconds']} s; raw results in {saved}")
    if not args.no_write:
        report.write(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
