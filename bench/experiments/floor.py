"""The floor under modelmart's own plumbing: a pass-through (parse the JSON, forward, parse,
re-encode) on ``modelmart.server`` and ``providers/h1.py``, with no gateway logic, measured
like ``cpu_per_request.py``. The gap between this and modelmart is the gateway's own work.

    python bench/experiments/floor.py            # JSON at concurrency 16
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-fake"}


def serve(port: int, upstream: str) -> None:
    import orjson

    from modelmart.server import Server
    from modelmart.providers.h1 import Client

    client: list[Client] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if not client:
            client.append(Client())
        data = orjson.loads((await receive())["body"])
        reply = await client[0].request("POST", upstream, HEADERS, orjson.dumps(data),
                                        connect_timeout=5)
        body = orjson.dumps(orjson.loads(await reply.read()))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    Server(app, "127.0.0.1", port, lifespan=False).run()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return
    import psutil
    import wrk
    from procs import Processes, free_port, wait_listening
    from upstream import CHAT_PATH, start_upstream

    procs, workdir = Processes(), Path(tempfile.mkdtemp())
    try:
        upstream_port, _ = start_upstream(procs, workdir)
        port, log = free_port(), workdir / "floor.log"
        proc = procs.start([sys.executable, __file__, "--serve", str(port),
                            f"http://127.0.0.1:{upstream_port}{CHAT_PATH}"], log)
        wait_listening(port, proc, timeout=20, log=log)
        script = wrk.write_script(workdir / "load.lua", CHAT_PATH,
                                  wrk.chat_body("gpt-4o-mini", False), {})
        url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        wrk.run(url, script, 16, 2, 1)
        worker = psutil.Process(proc.pid)
        before = sum(worker.cpu_times()[:2])
        result = wrk.run(url, script, 16, 6, 1)
        used = sum(worker.cpu_times()[:2]) - before
        print(f"floor (modelmart's server + client, no gateway logic): {result.rps:.0f} req/s, "
              f"{used / (result.rps * 6) * 1e6:.0f} us CPU/request")
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
