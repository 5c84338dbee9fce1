"""What the HTTP plumbing alone costs per request, with no gateway logic: CPU µs per request
of (1) a server answering a fixed JSON body — uvicorn, aiohttp's server and modelmart's
``modelmart.server`` behind the same trivial ASGI app — under wrk at concurrency 16, and (2) a
client POSTing small JSON over kept-alive loopback connections — aiohttp's client and
modelmart's ``providers/h1.py`` — 16 at a time against a raw httptools server.

    python bench/experiments/transport_cost.py          # needs wrk on the PATH

This is why modelmart has its own server and client (README, "Dependencies")."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time

BODY = (b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":'
        b'{"role":"assistant","content":"Hello! How can I help you today?"}}]}')
REQUEST = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})


def serve(kind: str, port: int) -> None:
    import uvloop

    if kind == "raw":
        import httptools

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport, self.parser = transport, httptools.HttpRequestParser(self)

            def data_received(self, data):
                self.parser.feed_data(data)

            def on_message_complete(self):
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"
                                     % (len(BODY), BODY))

        async def main():
            await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", port, backlog=4096)
            await asyncio.Event().wait()

        uvloop.run(main())
    elif kind == "uvicorn":
        import uvicorn

        uvicorn.run(asgi_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                    log_level="warning", access_log=False, lifespan="off")
    elif kind == "aiohttp":
        from aiohttp import web

        async def handler(request):
            await request.read()
            return web.Response(body=BODY, content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    elif kind == "modelmart":
        from modelmart.server import Server

        Server(asgi_app, "127.0.0.1", port, lifespan=False).run()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
    time.sleep(1.5)
    return proc, port


def server_cost(kind: str, script: str) -> str:
    proc, port = start(kind)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        subprocess.run(["wrk", "-t1", "-c16", "-d2s", "-s", script, url], capture_output=True)
        before = cpu_seconds(proc.pid)
        out = subprocess.run(["wrk", "-t1", "-c16", "-d5s", "-s", script, url],
                             capture_output=True, text=True).stdout
        used = cpu_seconds(proc.pid) - before
        n = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
        return f"server {kind:10s} {n / 5:9.0f} req/s  {used / n * 1e6:6.1f} µs CPU/request"
    finally:
        proc.terminate()
        proc.wait()


async def client_cost(kind: str, port: int, n: int = 20_000, concurrency: int = 16) -> str:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk"}
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

        async def one():
            async with session.post(url, data=REQUEST, headers=headers) as resp:
                return await resp.read()
    else:
        from modelmart.providers.h1 import Client

        session = Client()

        async def one():
            reply = await session.request("POST", url, headers, REQUEST, connect_timeout=5)
            return await reply.read()

    async def worker(count):
        for _ in range(count):
            await one()

    await asyncio.gather(*[worker(200) for _ in range(concurrency)])  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*[worker(n // concurrency) for _ in range(concurrency)])
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await session.close()
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return f"client {kind:10s} {n / (t1 - t0):9.0f} req/s  {cpu / n * 1e6:6.1f} µs CPU/request"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    import uvloop

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f"wrk.method='POST'; wrk.body='{REQUEST.decode()}'; "
                "wrk.headers['Content-Type']='application/json'\n")
    for kind in ("raw", "uvicorn", "aiohttp", "modelmart"):
        print(server_cost(kind, f.name), flush=True)
    os.unlink(f.name)
    proc, port = start("raw")
    try:
        for kind in ("aiohttp", "h1"):
            print(uvloop.run(client_cost(kind, port)), flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
