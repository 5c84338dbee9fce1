"""CPU per request of one modelmart worker, by thread, under wrk at one concurrency (the
bench's nginx upstream; auth, limits and metering on). Quicker than ``bench/run.py`` when
comparing one change; pair runs with ``ab.sh``, since the machine's noise is ±10 %.

    python bench/experiments/cpu_per_request.py json 16 [ENV=VALUE ...]

The mode is any of bench/modes.py's (json, stream, stream-simple, long, big, anthropic,
bedrock).

``BENCH_TARGET=passthrough`` measures the minimal aiohttp pass-through instead, for the ratio
the issue's target is about (same machine, same minute). ``BENCH_WORKERS=2`` starts that many
modelmart workers (then only req/s is meaningful: the CPU is the supervisor's).
``BENCH_NO_RPM=1`` gives the bench's key no rate limit (an ablation: what limits cost).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import wrk  # noqa: E402
from procs import Processes  # noqa: E402
from targets import (Context, mode_request, smoke_check, start_modelmart,  # noqa: E402
                     start_passthrough)
from upstream import start_upstream  # noqa: E402


def main() -> None:
    mode, concurrency = sys.argv[1], int(sys.argv[2])
    for pair in sys.argv[3:]:
        name, _, value = pair.partition("=")
        os.environ[name] = value
    procs, workdir = Processes(), Path(tempfile.mkdtemp())
    try:
        port, proc = start_upstream(procs, workdir)
        ctx = Context(procs, workdir, port, proc, None, Path("/nonexistent"))
        if os.environ.get("BENCH_TARGET") == "passthrough":
            run = start_passthrough(ctx)
        else:
            run = start_modelmart(int(os.environ.get("BENCH_WORKERS", "1")))(ctx)
            smoke_check(run)
        path, body, headers = mode_request(run, mode)
        script = wrk.write_script(workdir / "load.lua", path, body, headers)
        url = run.base_url + path
        wrk.run(url, script, concurrency, 2, 1)  # warm-up
        worker = psutil.Process(run.proc.pid)

        def cpu() -> dict[int, float]:
            return {t.id: t.user_time + t.system_time for t in worker.threads()}

        before = cpu()
        result = wrk.run(url, script, concurrency, 6, 1)
        after = cpu()
        n = result.rps * 6
        total = sum(after.values()) - sum(before.values())
        print(f"{mode} c={concurrency} {result.rps:.0f} req/s p50 {result.p50_ms:.2f}ms p99 {result.p99_ms:.2f}ms "
              f"total {total:.2f}s = {total / n * 1e6:.0f} us/req")
        for tid in sorted(after, key=lambda t: before.get(t, 0) - after[t]):
            used = after[tid] - before.get(tid, 0)
            if used > 0.01:
                print(f"   thread {tid}: {used / n * 1e6:.0f} us/req")
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
