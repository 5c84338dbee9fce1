"""Load with wrk: a Lua script sets the POST body and headers, and its ``done()`` callback
prints the summary and latency percentiles as one JSON line, so parsing never depends on
wrk's human-readable output."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARK = "BENCH_JSON "

_DONE = r'''
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n%s{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,' ..
    '"mean_us":%.1f,"max_us":%.1f}\n',
    "MARK", summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
'''


def chat_body(model: str, stream: bool) -> str:
    """The short chat request every target gets: 2 messages, max_tokens 16."""
    body = {"model": model, "max_tokens": 16, "stream": stream,
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "Say hello in one short sentence."}]}
    return json.dumps(body, separators=(",", ":"))


def _lua_string(text: str) -> str:
    assert "]==]" not in text
    return "[==[" + text + "]==]"


def write_script(path: Path, url_path: str, body: str, headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.path = {_lua_string(url_path)}",
             f"wrk.body = {_lua_string(body)}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n" + _DONE.replace("MARK", MARK))
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int  # connect, read, write, timeout, and non-2xx/3xx replies
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(url: str, script: Path, connections: int, seconds: int, threads: int) -> WrkResult:
    argv = ["wrk", "-t", str(max(1, min(threads, connections))), "-c", str(connections),
            "-d", f"{int(seconds)}s", "--timeout", "10s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK):])
            break
    else:
        raise RuntimeError(f"wrk printed no summary (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-300:]}")
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
                     errors=errors, p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                     mean_ms=data["mean_us"] / 1000)
