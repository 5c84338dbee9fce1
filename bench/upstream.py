"""The fake upstream (nginx answering fixed bodies) and the nginx pass-through.

The bodies are what the providers send, byte for byte in shape: OpenAI's chat completion
and its stream (with every member a real one carries: ``service_tier``,
``system_fingerprint``, ``logprobs``, ``refusal``, ``usage: null``, a random
``obfuscation`` per chunk, the usage chunk), a 500-chunk stream of the same, Anthropic's
Messages stream, and, for comparison, the simplified chunks the bench used to send.
Everything lives in a temp prefix.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
from pathlib import Path

from procs import HOST, Processes, free_port, wait_listening

MODEL = "gpt-4o-mini"  # what clients ask for
UPSTREAM_MODEL = "gpt-4o-mini-2024-07-18"  # what OpenAI answers with
CHAT_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
# Path prefixes of the upstream's bodies besides the JSON completion at CHAT_PATH.
STREAM_PREFIX = "/stream"  # a short answer streamed as OpenAI streams it
SIMPLE_PREFIX = "/simple"  # the same answer in the simplified chunks the bench used to send
LONG_PREFIX = "/long"  # a 500-chunk stream
ANTHROPIC_PREFIX = "/anthropic"  # Anthropic's Messages stream, at ANTHROPIC_PATH
WORDS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
LONG_CHUNKS = 500
CHAT_ID = "chatcmpl-BnchQ7c2oXb8tLkA1uZy0pWmE4rJd"
CREATED = 1777421458
FINGERPRINT = "fp_d4636387fb"
_ALNUM = string.ascii_letters + string.digits


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


COMPLETION = {
    "id": CHAT_ID, "object": "chat.completion", "created": CREATED, "model": UPSTREAM_MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS),
                                         "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": _usage(19, len(WORDS)), "service_tier": "default", "system_fingerprint": FINGERPRINT,
}


def _compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def openai_chunks(words: list[str], seed: int = 1) -> list[dict]:
    """A stream as OpenAI sends it when asked for usage (as gateways ask): every chunk has
    ``service_tier``, ``system_fingerprint``, ``logprobs``, ``usage`` (null but in the last)
    and a random ``obfuscation``; the first delta carries ``role`` and ``refusal``."""
    rng = random.Random(seed)

    def chunk(choices: list, usage: dict | None = None) -> dict:
        return {"id": CHAT_ID, "object": "chat.completion.chunk", "created": CREATED,
                "model": UPSTREAM_MODEL, "service_tier": "default",
                "system_fingerprint": FINGERPRINT, "choices": choices, "usage": usage,
                "obfuscation": "".join(rng.choices(_ALNUM, k=rng.randint(2, 15)))}

    def choice(delta: dict, finish: str | None = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    out = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
    out += [chunk(choice({"content": w})) for w in words]
    out.append(chunk(choice({}, "stop")))
    out.append(chunk([], _usage(19, len(words))))
    return out


def simple_chunks(words: list[str]) -> list[dict]:
    """The chunks the bench sent before it sent real ones: no padding, no usage."""
    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk",
                "created": 1700000000, "model": MODEL, "system_fingerprint": "fp_bench",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}

    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": w}) for w in words),
            chunk({}, "stop")]


def sse_body(chunks: list[dict] | None = None) -> str:
    chunks = openai_chunks(WORDS) if chunks is None else chunks
    return "".join(f"data: {_compact(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def long_words(n: int = LONG_CHUNKS) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(n)]


def anthropic_sse_body(words: list[str] = WORDS) -> str:
    """A Messages stream as Anthropic's API reference shows one."""
    usage = {"input_tokens": 19, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
             "output_tokens": 1, "service_tier": "standard"}
    message = {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
               "model": "claude-3-5-haiku-20241022", "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": usage}
    events = [("message_start", {"type": "message_start", "message": message}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("ping", {"type": "ping"})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": w}})
               for w in words]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": len(words)}}),
               ("message_stop", {"type": "message_stop"})]
    return "".join(f"event: {name}\ndata: {_compact(data)}\n\n" for name, data in events)


def completion_body() -> str:
    return _compact(COMPLETION)


def upstream_bodies() -> dict[str, tuple[str, str]]:
    """Upstream path -> (content type, body)."""
    sse = "text/event-stream"
    return {CHAT_PATH: ("application/json", completion_body()),
            STREAM_PREFIX + CHAT_PATH: (sse, sse_body()),
            SIMPLE_PREFIX + CHAT_PATH: (sse, sse_body(simple_chunks(WORDS))),
            LONG_PREFIX + CHAT_PATH: (sse, sse_body(openai_chunks(long_words()))),
            ANTHROPIC_PREFIX + ANTHROPIC_PATH: (sse, anthropic_sse_body())}


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
    """Each body is a file: a POST to a static file is refused (405), and that refusal is
    turned into the file itself (``error_page 405 =200 $uri``), so the request body is read
    and dropped. (``return 200 '<body>'`` takes no body over nginx's 4 KB token limit.)"""
    files = prefix / "bodies"
    files.mkdir(parents=True, exist_ok=True)
    for folder in (prefix.parent, prefix, files):  # nginx's workers may run as nobody
        folder.chmod(0o755)
    locations = []
    for i, (path, (ctype, body)) in enumerate(upstream_bodies().items()):
        (files / f"{i}.body").write_text(body)
        (files / f"{i}.body").chmod(0o644)
        locations.append(f"""
        location = {path} {{
            default_type {ctype};
            error_page 405 =200 $uri;
            alias {files / f"{i}.body"};
        }}""")
    return _nginx_conf(prefix, port, "\n".join(locations), workers="1",
                       extra_http="client_body_buffer_size 1m; client_max_body_size 8m;")


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
    return _nginx_conf(prefix, port, body, workers="1",
                       extra_http=pool + " client_body_buffer_size 1m; client_max_body_size 8m;")


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
