"""A soak run: many requests (a quarter of them streamed) through one ``modelmart serve``
over an nginx upstream with canned OpenAI answers, sampling the server's resident memory.

    PYTHONPATH=src:. python -m tests.soak.soak [--requests 200000] [--concurrency 16]

Prints the resident memory (RSS, MiB) after each tenth of the run and a verdict: after a
warm-up (the first fifth), memory must stay within 10 % of where the warm-up ended. Every
request must be answered 200 and have its ledger row. The load generator is a small HTTP/1.1
client on raw keep-alive connections (cheaper than any SDK, so the server is what is busy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from tests.fakes.script import free_port

WORDS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
COMPLETION = {
    "id": "chatcmpl-soak", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "".join(WORDS)}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}


def _chunk(delta: dict, finish=None) -> dict:
    return {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish}]}


def _sse() -> str:
    events = [_chunk({"role": "assistant", "content": ""}), *(_chunk({"content": w})
                                                              for w in WORDS), _chunk({}, "stop")]
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def _quoted(text: str) -> str:
    assert "$" not in text and "'" not in text
    return "'" + text.replace("\\", "\\\\").replace("\n", "\\n") + "'"


def upstream_conf(prefix: Path, port: int) -> str:
    return f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {_quoted(json.dumps(COMPLETION))};
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            return 200 {_quoted(_sse())};
        }}
    }}
}}
"""


@dataclass
class Run:
    requests: int
    statuses: dict[int, int] = field(default_factory=dict)
    rss_mib: list[tuple[int, float]] = field(default_factory=list)  # (requests done, MiB)
    seconds: float = 0.0
    ledger_rows: int = 0

    def growth(self, warm_up: float = 0.2) -> float:
        """The largest RSS after the warm-up over the RSS where the warm-up ended, minus 1."""
        after = [mib for done, mib in self.rss_mib if done >= self.requests * warm_up]
        return max(after) / after[0] - 1

    def report(self) -> str:
        samples = ", ".join(f"{done:,}: {mib:.1f}" for done, mib in self.rss_mib)
        return (f"{self.requests:,} requests in {self.seconds:.0f} s "
                f"({self.requests / self.seconds:.0f}/s), statuses {self.statuses}, ledger rows "
                f"{self.ledger_rows:,}; RSS MiB by requests done: {samples}; growth after "
                f"warm-up {self.growth() * 100:+.1f} %")


class Client:
    """HTTP/1.1 on one keep-alive connection: content-length and chunked replies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def post(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            start = lower.index(b"content-length:") + 15
            length = int(lower[start:lower.index(b"\r\n", start)])
            await self.reader.readexactly(length)
        return status


def _request(port: int, key: str, model: str, stream: bool) -> bytes:
    body = json.dumps({"model": model, "stream": stream, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def _load(port: int, key: str, run: Run, concurrency: int, pid: int) -> None:
    json_request = _request(port, key, "soak", False)
    stream_request = _request(port, key, "soak-stream", True)
    process = psutil.Process(pid)
    done = 0
    every = max(1, run.requests // 10)
    todo = iter(range(run.requests))

    async def client() -> None:
        nonlocal done
        http = Client(port)
        for i in todo:
            status = await http.post(stream_request if i % 4 == 0 else json_request)
            run.statuses[status] = run.statuses.get(status, 0) + 1
            done += 1
            if done % every == 0:
                run.rss_mib.append((done, process.memory_info().rss / 2**20))
        http.writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))


def soak(requests: int, concurrency: int = 16, nginx: str = "nginx") -> Run:
    workdir = Path(tempfile.mkdtemp(prefix="modelmart-soak-"))
    procs: list[subprocess.Popen] = []
    try:
        up_port, port = free_port(), free_port()
        (workdir / "nginx").mkdir()
        conf = workdir / "nginx" / "nginx.conf"
        conf.write_text(upstream_conf(workdir / "nginx", up_port))
        procs.append(subprocess.Popen([nginx, "-p", str(workdir / "nginx"), "-c", str(conf),
                                       "-e", str(workdir / "nginx" / "error.log")]))
        cost = {"input": "0.15", "output": "0.60", "cache_read": "0.075", "cache_write": "0.15"}
        base = f"http://127.0.0.1:{up_port}"
        catalog = {"bundled_model": False, "models": {
            "soak": {"provider": "openai-compatible", "model": "gpt-4o-mini", "cost": cost,
                     "base_url": f"{base}/v1", "api_key": "sk-soak", "price": {"markup": "0.2"}},
            "soak-stream": {"provider": "openai-compatible", "model": "gpt-4o-mini",
                            "cost": cost, "base_url": f"{base}/stream/v1", "api_key": "sk-soak",
                            "price": {"markup": "0.2"}}}}
        (workdir / "modelmart.yaml").write_text(yaml.safe_dump(catalog))
        database = f"sqlite:///{workdir / 'modelmart.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELMART_")}
        cli = [sys.executable, "-m", "modelmart.cli.main"]
        subprocess.run([*cli, "customers", "create", "soak", "--database", database],
                       env=env, check=True, capture_output=True)
        # Limits and a budget, so admission does all its work (far from refusing anything).
        key = json.loads(subprocess.run(
            [*cli, "keys", "create", "--customer", "soak", "--rpm", "100000000", "--tpm",
             "1000000000", "--budget", "100000", "--json", "--database", database],
            env=env, check=True, capture_output=True, text=True).stdout)["secret"]
        log = open(workdir / "serve.log", "w")
        server = subprocess.Popen(
            [*cli, "serve", "--config", str(workdir / "modelmart.yaml"), "--database", database,
             "--port", str(port), "--log-level", "warning"], cwd=workdir, env=env,
            stdout=log, stderr=subprocess.STDOUT)
        procs.append(server)
        _wait(port, server, workdir / "serve.log")
        run = Run(requests)
        started = time.perf_counter()
        asyncio.run(_load(port, key, run, concurrency, server.pid))
        run.seconds = time.perf_counter() - started
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        with sqlite3.connect(workdir / "modelmart.db") as db:
            run.ledger_rows = db.execute("SELECT count(*) FROM usage").fetchone()[0]
        return run
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        subprocess.run(["rm", "-rf", str(workdir)])


def _wait(port: int, proc: subprocess.Popen, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"modelmart serve exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"modelmart serve did not listen:\n{log.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    run = soak(args.requests, args.concurrency)
    print(run.report())
    ok = (run.statuses == {200: args.requests} and run.ledger_rows == args.requests
          and run.growth() <= 0.10)
    print("flat" if ok else "NOT FLAT (or lost requests)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
