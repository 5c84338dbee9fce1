"""A fake OpenAI upstream that holds streams open: one chat.completion.chunk (in OpenAI's
real shape) every ``--interval`` seconds, ``--chunks`` times, then ``data: [DONE]``. Used by the open-streams
memory check, where the gateway must hold many concurrent streams at once.

    python bench/slow_upstream.py --port 9001 --chunks 20 --interval 1
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from upstream import openai_chunks, sse_body


def build_app(chunks: int, interval: float) -> web.Application:
    # OpenAI's real chunks (see upstream.py): the role chunk at once, then a text chunk
    # every interval, then the finish and usage chunks and [DONE].
    frames = [f.encode() for f in sse_body(openai_chunks([f" word{i}" for i in range(chunks)]))
              .split("\n\n") if f]
    frames = [f + b"\n\n" for f in frames]

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(frames[0])
        for frame in frames[1:chunks + 1]:
            await asyncio.sleep(interval)
            await resp.write(frame)
        await resp.write(b"".join(frames[chunks + 1:]))
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
