"""Run in a child process by ``test_hostile_upstreams.py``: one call to a hostile upstream
through a provider (or, with ``"raw": true``, the bare ``h1`` client), while a normal request
after another is served beside it on the same loop. Prints one JSON line: what the call
ended in, the CPU seconds and the peak RSS growth it cost, and the latencies of the normal
requests served meanwhile.

    python -m tests.providers.hostile_probe '{"url": ..., "model": "body:314572800",
                                              "stream": false, "limits": {"body_bytes": 8388608}}'
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from modelmart.core.errors import GatewayError
from modelmart.core.types import Message, Request, TextBlock
from modelmart.providers.base import ProviderConfig
from modelmart.providers.http import new_session
from modelmart.providers.openai import OpenAIProvider


def _request(stream: bool) -> Request:
    return Request(model="m", messages=[Message("user", [TextBlock("hi")])], max_tokens=5,
                   stream=stream)


def _config(url: str, model: str, limits: dict | None) -> ProviderConfig:
    # Written to run on older code too (without names, limits or proxies), to show the
    # cost there: what it lacks is left out.
    cfg = ProviderConfig("openai", model, base_url=url + "/v1")
    if hasattr(cfg, "limits"):
        from modelmart.providers.base import UpstreamLimits

        cfg.name = f"{model.split(':')[0]}-dep"
        cfg.limits = UpstreamLimits(**(limits or {}))
    return cfg


def _session():
    try:
        return new_session(proxies={})
    except TypeError:
        return new_session()


async def _hostile(case: dict, http) -> dict:
    if case.get("raw"):
        cfg = _config(case["url"], "x", case.get("limits"))
        client = http.for_config(cfg) if hasattr(http, "for_config") else http
        reply = await client.request(
            "POST", case["url"] + "/v1/chat/completions", {"content-type": "application/json"},
            json.dumps({"model": case["model"]}).encode(), connect_timeout=5)
        headers = {k: len(v) for k, v in reply.headers.items()}
        reply.close()
        return {"outcome": "reply", "status": reply.status, "header_lengths": headers}
    provider = OpenAIProvider(_config(case["url"], case["model"], case.get("limits")), http)
    try:
        if case.get("stream"):
            async for _ in provider.stream(_request(True)):
                pass
        else:
            await provider.complete(_request(False))
    except GatewayError as err:
        return {"outcome": "error", "status": err.status, "message": err.message}
    except Exception as exc:  # noqa: BLE001 - reported, for the test to show
        return {"outcome": "crash", "message": repr(exc)[:500]}
    return {"outcome": "no error"}


async def main(case: dict) -> dict:
    http = _session()
    normal = OpenAIProvider(_config(case["url"], "ok", {}), http)
    await normal.complete(_request(False))  # warm: imports, a pooled connection
    done = asyncio.Event()

    async def served() -> list[float]:
        latencies = []
        while not done.is_set():
            started = time.perf_counter()
            await normal.complete(_request(False))
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
        return latencies

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    started = time.perf_counter()
    beside = asyncio.create_task(served())
    result = await _hostile(case, http)
    took = time.perf_counter() - started
    done.set()
    latencies = await beside
    result.update(
        cpu_s=round(time.process_time() - cpu, 3), wall_s=round(took, 3),
        rss_growth_mb=round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024, 1),
        served=len(latencies), worst_latency_s=round(max(latencies, default=0.0), 3))
    await http.close()
    return result


if __name__ == "__main__":
    try:
        import uvloop

        run = uvloop.run  # the gateway's own loop
    except ImportError:
        run = asyncio.run
    print(json.dumps(run(main(json.loads(sys.argv[1])))))
