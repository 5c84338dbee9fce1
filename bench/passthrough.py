"""The minimal Python pass-through: the floor for any Python gateway.

One process, aiohttp server and one pooled aiohttp client session (uvloop and orjson when
installed, like modelmart). A request's JSON is parsed, its ``model`` picks an upstream URL,
it is re-encoded and forwarded; a JSON reply is parsed and re-encoded; a stream is relayed
chunk by chunk. No validation, auth, routing policy or metering: nothing a real gateway can skip.

    python bench/passthrough.py --port 9000 --routes '{"gpt-4o-mini": "http://127.0.0.1:8080/v1/chat/completions"}'
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
from aiohttp import web

try:
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
except ImportError:  # still a valid floor, just a slower one
    loads, dumps = json.loads, lambda o: json.dumps(o).encode()

UPSTREAM_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-fake"}


def build_app(routes: dict[str, str]) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)

    async def start_session(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=2000)
        app["session"] = aiohttp.ClientSession(connector=connector)

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        data = loads(await request.read())
        url = routes.get(data.get("model"))
        if url is None:
            return web.json_response({"error": {"message": "unknown model"}}, status=404)
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(url, data=dumps(data), headers=UPSTREAM_HEADERS) as upstream:
            if data.get("stream"):
                resp = web.StreamResponse(status=upstream.status,
                                          headers={"content-type": "text/event-stream"})
                await resp.prepare(request)
                try:
                    async for chunk in upstream.content.iter_any():
                        await resp.write(chunk)
                    await resp.write_eof()
                except ConnectionResetError:  # the client went away: drop the upstream too
                    pass
                return resp
            reply = loads(await upstream.read())
            return web.Response(body=dumps(reply), status=upstream.status,
                                content_type="application/json")

    app.on_startup.append(start_session)
    app.on_cleanup.append(close_session)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--routes", required=True, help="JSON object: model id -> upstream URL")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(build_app(json.loads(args.routes)), host="127.0.0.1", port=args.port,
                access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
