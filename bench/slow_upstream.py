"""A fake OpenAI upstream that holds streams open: one chat.completion.chunk every
``--interval`` seconds, ``--chunks`` times, then ``data: [DONE]``. Used by the open-streams
memory check, where the gateway must hold many concurrent streams at once.

    python bench/slow_upstream.py --port 9001 --chunks 20 --interval 1
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web


def _frame(delta: dict, finish: str | None = None) -> bytes:
    event = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1700000000,
             "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def build_app(chunks: int, interval: float) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_frame({"role": "assistant", "content": ""}))
        for i in range(chunks):
            await asyncio.sleep(interval)
            await resp.write(_frame({"content": f" word{i}"}))
        await resp.write(_frame({}, "stop") + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/{tail:.*}", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    web.run_app(build_app(args.chunks, args.interval), host="127.0.0.1", port=args.port,
                access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
