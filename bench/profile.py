"""Profile modelmart under load: the bench's upstream, one modelmart worker, wrk at one
concurrency, and ``py-spy record`` on the worker meanwhile. Writes a flame graph and prints
the functions with the most samples (self and inclusive).

    pip install py-spy
    python bench/profile.py --mode json --concurrency 16 --duration 15
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wrk  # noqa: E402
from procs import Processes  # noqa: E402
from targets import Context, smoke_check, start_modelmart  # noqa: E402
from upstream import start_upstream  # noqa: E402


def top_frames(collapsed: Path, n: int) -> tuple[list, list, int]:
    """(self, inclusive) sample counts per function from py-spy's collapsed-stack output."""
    own, incl, total = collections.Counter(), collections.Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            incl[frame] += samples
    return own.most_common(n), incl.most_common(n), total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["json", "stream"], default="json")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "modelmart-profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        print("profile: py-spy is required (pip install py-spy)", file=sys.stderr)
        return 2
    procs, workdir = Processes(), Path(tempfile.mkdtemp(prefix="modelmart-profile-"))
    try:
        port, proc = start_upstream(procs, workdir)
        ctx = Context(procs, workdir, port, proc, None, Path("/nonexistent"))
        run = start_modelmart(1)(ctx)
        smoke_check(run)
        path, model = run.routes[args.mode]
        script = wrk.write_script(workdir / "load.lua", path,
                                  wrk.chat_body(model, args.mode == "stream"), run.headers)
        url = run.base_url + path
        wrk.run(url, script, args.concurrency, 2, 1)  # warm-up
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(
            r=wrk.run(url, script, args.concurrency, args.duration + 2, 1)))
        load.start()
        collapsed, svg = args.out.with_suffix(".txt"), args.out.with_suffix(".svg")
        for fmt, out in (("raw", collapsed), ("flamegraph", svg)):
            subprocess.run(["py-spy", "record", "-p", str(run.proc.pid), "-d", str(args.duration // 2),
                            "-r", str(args.rate), "-f", fmt, "-o", str(out), "--nonblocking"],
                           check=True, capture_output=True)
        load.join()
        res = result["r"]
        print(f"load: {args.mode} c={args.concurrency}: {res.rps:.0f} req/s, p50 {res.p50_ms:.2f} ms "
              f"(profiling slows it)")
        own, incl, total = top_frames(collapsed, args.top)
        for title, rows in (("self", own), ("inclusive", incl)):
            print(f"\ntop {args.top} by {title} samples (of {total}):")
            for frame, count in rows:
                print(f"  {100 * count / total:5.1f}%  {frame}")
        print(f"\nflame graph: {svg}; collapsed stacks: {collapsed}")
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
