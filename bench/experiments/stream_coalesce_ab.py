"""A/B for proposal 1 in bench/profile-notes.md: stock modelmart against modelmart with
``send_stream`` coalescing the SSE frames that are ready without waiting (coalesce_patch.py,
a monkeypatch: nothing in src/ changes). Streams at concurrency 1 and 16, alternating rounds;
CPU per request is the figure to read on a shared machine.

    python bench/experiments/stream_coalesce_ab.py [--rounds 2] [--duration 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import memory  # noqa: E402
import targets  # noqa: E402
import wrk  # noqa: E402
from procs import Processes  # noqa: E402
from targets import Context, smoke_check, start_modelmart  # noqa: E402
from upstream import start_upstream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=6)
    args = parser.parse_args()
    stock = targets._modelmart_cmd
    variants = [("stock", stock), ("coalesce", lambda: [sys.executable, str(HERE / "coalesce_patch.py")])]
    procs, workdir = Processes(), Path(tempfile.mkdtemp(prefix="modelmart-ab-"))
    try:
        port, proc = start_upstream(procs, workdir)
        ctx = Context(procs, workdir, port, proc, None, Path("/nonexistent"))
        for rnd in range(args.rounds):
            for name, cmd in variants:
                targets._modelmart_cmd = cmd
                run = start_modelmart(1)(ctx)
                smoke_check(run)
                path, model = run.routes["stream"]
                script = wrk.write_script(workdir / "s.lua", path, wrk.chat_body(model, True), run.headers)
                for conc in (1, 16):
                    wrk.run(run.base_url + path, script, conc, 2, 1)
                    cpu0 = memory.tree_cpu_seconds(run.proc.pid)
                    res = wrk.run(run.base_url + path, script, conc, args.duration, 1)
                    cpu = memory.tree_cpu_seconds(run.proc.pid) - cpu0
                    print(f"round {rnd} {name:9} c={conc:<3} {res.rps:6.0f} req/s  p50 {res.p50_ms:6.2f} ms  "
                          f"CPU {1e6 * cpu / max(1, res.requests):5.0f} us/req", flush=True)
                procs.stop(run.proc)
    finally:
        targets._modelmart_cmd = stock
        procs.stop_all()


if __name__ == "__main__":
    main()
