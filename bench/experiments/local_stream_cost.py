"""The gateway's own CPU per token of a bundled-model stream, without the model's: the
gateway runs in process (uvloop, its own server) with the local provider's sampling loop
replaced by one that emits a token every ``INTERVAL`` seconds (sleeping, as llama.cpp's
decode releases the GIL), and a raw-socket client reads the stream. The event loop
thread's CPU time over the tokens it relayed is the figure; ``--profile`` adds cProfile of
that thread.

    python bench/experiments/local_stream_cost.py [--tokens 400] [--interval 0.005] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from modelmart.api.app import create_app  # noqa: E402
from modelmart.api.server import Server  # noqa: E402
from modelmart.api.settings import Settings  # noqa: E402
from modelmart.catalog.loader import parse_catalog  # noqa: E402
from modelmart.providers.local import provider as local_provider  # noqa: E402
from modelmart.providers.local.generate import Finished  # noqa: E402
from tests.fakes.script import free_port  # noqa: E402
from tests.harness import provision_key  # noqa: E402

PIECES = [" the", " keeper", " lit", " a", " lamp", ",", " and", " waited", "."]


def fake_generate(interval: float):
    def generate(llama, plan, usage, cancel, emit):
        for i in range(plan.max_tokens):
            time.sleep(interval)
            usage.output_tokens += 1
            emit(PIECES[i % len(PIECES)])
            if cancel.is_set():
                return None
        return Finished("max_tokens")
    return generate


def read_stream(port: int, key: str, tokens: int) -> bytes:
    body = json.dumps({"model": "smollm2-135m", "stream": True, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "Tell a story."}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    return data


def thread_cpu(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=400)
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    local_provider.generate = fake_generate(args.interval)
    folder = tempfile.mkdtemp()
    db = f"sqlite:///{folder}/mm.db"
    key = provision_key(db, "bench")
    options = {"n_threads": 1}
    catalog = parse_catalog({"bundled_model": False, "models": {"smollm2-135m": {
        "owned_by": "modelmart", "max_output_tokens": 4096,
        "deployments": [{"provider": "local", "name": "local", "options": options}]}}})
    app = create_app(Settings(catalog=catalog, database_url=db, journal_dir=f"{folder}/j"))
    port = free_port()
    server = Server(app, "127.0.0.1", port)
    profiler = cProfile.Profile() if args.profile else None

    def run():
        if profiler:
            profiler.enable()
        server.run(True)
        if profiler:
            profiler.disable()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    read_stream(port, key, 20)
    for _ in range(args.rounds):
        cpu0 = thread_cpu(thread)
        data = read_stream(port, key, args.tokens)
        used = thread_cpu(thread) - cpu0
        chunks = data.count(b"data: ")
        print(f"{args.tokens} tokens, {chunks} data frames: loop thread {used / args.tokens * 1e6:.1f} "
              f"us CPU a token", flush=True)
    server.should_exit = True
    thread.join(10)
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
