"""The fake upstream (nginx answering fixed OpenAI bodies) and the nginx pass-through.

nginx answers with ``return 200 '<body>'``, which runs before the static module and so works
for POST; the request body is read and discarded. Everything lives in a temp prefix.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from procs import HOST, Processes, free_port, wait_listening

MODEL = "gpt-4o-mini"
STREAM_PREFIX = "/stream"  # the upstream serves the SSE variant under this prefix
CHAT_PATH = "/v1/chat/completions"
WORDS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]

COMPLETION = {
    "id": "chatcmpl-bench0001", "object": "chat.completion", "created": 1700000000,
    "model": MODEL, "system_fingerprint": "fp_bench",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None}}],
    "usage": {"prompt_tokens": 19, "completion_tokens": len(WORDS), "total_tokens": 19 + len(WORDS)},
}


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": 1700000000,
            "model": MODEL, "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def sse_events() -> list[dict]:
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": w}) for w in WORDS]
    events.append(_chunk({}, "stop"))
    return events


def sse_body() -> str:
    frames = [f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in sse_events()]
    return "".join(frames) + "data: [DONE]\n\n"


def completion_body() -> str:
    return json.dumps(COMPLETION, separators=(",", ":"))


def _quote(text: str) -> str:
    """A single-quoted nginx string (no variables in our bodies, so only escape quotes)."""
    assert "$" not in text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _nginx_conf(prefix: Path, port: int, server_body: str, workers: str, extra_http: str = "") -> str:
    return f"""
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    {extra_http}
    server {{
        listen {HOST}:{port} backlog=4096;
        {server_body}
    }}
}}
"""


def upstream_conf(prefix: Path, port: int) -> str:
    body = f"""
        location = {CHAT_PATH} {{
            default_type application/json;
            return 200 {_quote(completion_body())};
        }}
        location = {STREAM_PREFIX}{CHAT_PATH} {{
            default_type text/event-stream;
            add_header cache-control no-cache;
            return 200 {_quote(sse_body())};
        }}
    """
    return _nginx_conf(prefix, port, body, workers="1")


def passthrough_conf(prefix: Path, port: int, upstream_port: int) -> str:
    pool = f"upstream fake {{ server {HOST}:{upstream_port}; keepalive 512; keepalive_requests 10000000; }}"
    body = """
        location / {
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    """
    return _nginx_conf(prefix, port, body, workers="1", extra_http=pool)


def start_nginx(procs: Processes, workdir: Path, name: str, conf_text: str, port: int):
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    log = prefix / "stdout.log"
    check = subprocess.run(["nginx", "-t", "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx config for {name} is invalid: {check.stderr.strip()}")
    proc = procs.start(["nginx", "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)], log)
    wait_listening(port, proc, timeout=10, log=prefix / "error.log")
    return proc


def start_upstream(procs: Processes, workdir: Path) -> tuple[int, object]:
    port = free_port()
    proc = start_nginx(procs, workdir, "upstream", upstream_conf(workdir / "upstream", port), port)
    return port, proc


def nginx_available() -> str | None:
    """None when nginx is usable, else why not."""
    return None if shutil.which("nginx") else "nginx is not installed (apt-get install nginx)"
