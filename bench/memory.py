"""Peak resident memory of a process tree (a multi-worker server is several processes), and
the open-streams check: many concurrent streams held open through one gateway."""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time

import aiohttp

try:
    import psutil
except ImportError:  # fall back to /proc
    psutil = None


def raise_open_files_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _tree_rss_psutil(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _tree_rss_proc(pid: int) -> int:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(kids)
        frontier.extend(kids)
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (reaped ones included)."""
    if psutil is None:
        return _tree_cpu_proc(pid)
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _tree_cpu_proc(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")  # workers are counted once reaped only


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants (shared pages counted per process)."""
    return _tree_rss_psutil(pid) if psutil is not None else _tree_rss_proc(pid)


class RssSampler:
    """Samples a process tree's RSS in a background thread and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def take_peak(self) -> float:
        """The peak so far in MB; sampling starts afresh."""
        peak = max(self.peak, tree_rss(self.pid))
        self.peak = 0
        return peak / 2**20


async def _hold_streams(url: str, body: bytes, headers: dict[str, str], count: int,
                        deadline_s: float, settle_s: float) -> dict:
    opened = asyncio.Event()
    state = {"open": 0, "failed": 0, "first_error": None}

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                async for chunk in resp.content.iter_any():
                    if b"data:" in chunk:
                        break
                state["open"] += 1
                if state["open"] == count:
                    opened.set()
                await asyncio.sleep(3600)  # hold the stream until cancelled
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state["failed"] += 1
            state["first_error"] = state["first_error"] or f"{type(exc).__name__}: {exc}"[:200]

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=deadline_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        try:
            await asyncio.wait_for(opened.wait(), timeout=deadline_s)
            state["seconds_to_open"] = round(time.perf_counter() - started, 2)
            await asyncio.sleep(settle_s)  # all open: let the sampler see the plateau
        except asyncio.TimeoutError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return state


def open_streams(url: str, body: str, headers: dict[str, str], count: int, pid: int,
                 deadline_s: float = 15.0, settle_s: float = 1.0) -> dict:
    """Open ``count`` streams at once through a gateway whose upstream holds them open; report
    how many were open together and the gateway's peak RSS meanwhile."""
    hdrs = {"content-type": "application/json", **headers}
    with RssSampler(pid, interval=0.05) as sampler:
        before = tree_rss(pid) / 2**20
        state = asyncio.run(_hold_streams(url, body.encode(), hdrs, count, deadline_s, settle_s))
        peak = sampler.take_peak()
    return {"wanted": count, "opened": state["open"], "failed": state["failed"],
            "first_error": state["first_error"], "seconds_to_open": state.get("seconds_to_open"),
            "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1)}
