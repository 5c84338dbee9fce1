"""Time to first token: N sequential streaming requests at concurrency 1 over one kept-alive
connection, timing from sending the request to the first body chunk holding ``data:``."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp


async def _measure(url: str, body: bytes, headers: dict[str, str], count: int, warmup: int) -> list[float]:
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=30)
    samples: list[float] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for i in range(warmup + count):
            start = time.perf_counter()
            first = None
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"streaming request answered {resp.status}: "
                                       f"{(await resp.read())[:200]!r}")
                async for chunk in resp.content.iter_any():
                    if first is None and b"data:" in chunk:
                        first = time.perf_counter() - start
                # the rest of the stream is read so the connection is reused
            if first is None:
                raise RuntimeError("stream ended without a data: event")
            if i >= warmup:
                samples.append(first * 1000)
    return samples


def measure(url: str, body: str, headers: dict[str, str], count: int, warmup: int = 20) -> dict:
    """p50/p99 time to the first ``data:`` chunk, in ms."""
    hdrs = {"content-type": "application/json", **headers}
    samples = asyncio.run(_measure(url, body.encode(), hdrs, count, warmup))
    samples.sort()
    return {"n": len(samples), "p50_ms": statistics.median(samples),
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))]}
