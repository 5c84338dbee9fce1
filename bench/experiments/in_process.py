"""The gateway's own work per request, in process and without a network: the app driven
over ASGI, its provider answering at once (JSON: a canned response; stream: the bench's
12-event SSE body through the real decoder). Deterministic, so good for ranking functions:

    python bench/experiments/in_process.py json|stream [--profile]   # SHAPE=simple|long, BIG=1
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import orjson  # noqa: E402

from modelmart.api.app import create_app  # noqa: E402
from modelmart.api.settings import Settings  # noqa: E402
from modelmart.catalog.loader import parse_catalog  # noqa: E402
from modelmart.core.types import Response, TextBlock, Usage  # noqa: E402
from modelmart.dialects import openai_chat  # noqa: E402
from modelmart.providers.streaming import sse_batches  # noqa: E402
from targets import PRICE  # noqa: E402
from tests.harness import provision_key  # noqa: E402
from upstream import WORDS, long_words, openai_chunks, simple_chunks, sse_body  # noqa: E402

# The upstream's stream: OpenAI's real chunks (default), SHAPE=simple (the simplified
# chunks the bench used to send) or SHAPE=long (500 real chunks).
SSE = sse_body({"real": openai_chunks(WORDS), "simple": simple_chunks(WORDS),
                "long": openai_chunks(long_words())}[os.environ.get("SHAPE", "real")]).encode()


class _Body:
    def __init__(self) -> None:
        self.parts = [SSE]

    async def read(self) -> bytes:
        return self.parts.pop() if self.parts else b""

    async def aclose(self) -> None:
        pass


async def _open_body() -> _Body:
    return _Body()


async def main(mode: str, profile: bool, folder: str, db: str, key: str,
               n: int = int(os.environ.get("N", 20_000))) -> None:
    catalog = parse_catalog({"bundled_model": False, "models": {"gpt-4o-mini": {
        "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
        "model": "gpt-4o-mini", "api_key": "sk", "price": PRICE, "cost": PRICE}}})
    app = create_app(Settings(catalog=catalog, database_url=db, journal_dir=f"{folder}/j"))
    await app.startup()
    provider = next(iter(app.providers.values()))

    async def complete(req):
        return Response(id="chatcmpl-x", model="gpt-4o-mini", stop_reason="end_turn",
                        content=[TextBlock("Hello! How can I help you today?")],
                        usage=Usage(input_tokens=19, output_tokens=9))

    provider.complete = complete
    provider.stream_batches = lambda req: sse_batches(_open_body, openai_chat.StreamDecoder(True))
    # BIG=1: the bench's 200 KB prompt (mode "big") instead of a short one
    prompt = "Say hello"
    if os.environ.get("BIG"):
        from modes import big_prompt
        prompt = big_prompt() + "\n\nSay hello"
    body = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 16, "stream": mode == "stream",
                         "messages": [{"role": "user", "content": prompt}]})
    headers = [(b"host", b"x"), (b"authorization", b"Bearer " + key.encode()),
               (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    split = int(os.environ.get("SPLIT", 0))  # SPLIT=65536: the body in pieces, as a server reads it
    pieces = ([body[i:i + split] for i in range(0, len(body), split)] if split else [body])
    sent: list[dict] = []
    queue: list[dict] = []

    async def receive():
        if not queue:
            queue.extend({"type": "http.request", "body": b, "more_body": True} for b in pieces)
            queue[-1]["more_body"] = False
        return queue.pop(0)

    async def send(m):
        sent.append(m)

    async def one():
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "headers": headers,
                 "extensions": {"modelmart.disconnect": {"watch": lambda cb: (lambda: None)}}}
        await app(scope, receive, send)
        sent.clear()

    for _ in range(int(os.environ.get("WARMUP", 2000))):
        await one()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    for _ in range(n):
        await one()
    took = time.perf_counter() - started
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(30)
    print(f"{mode}: {took / n * 1e6:.1f} µs per request in process")
    await app.shutdown()


if __name__ == "__main__":
    folder = tempfile.mkdtemp()
    db = f"sqlite:///{folder}/mm.db"
    key = provision_key(db, "bench", rpm=1_000_000)  # runs its own event loop: before ours
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "json", "--profile" in sys.argv,
                     folder, db, key))
