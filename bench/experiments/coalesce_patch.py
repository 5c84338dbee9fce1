"""Experiment only (not in src/): ``modelmart serve`` with ``send_stream`` joining the frames
that are ready without waiting into one ASGI message. Usage: python coalesce_patch.py serve ..."""
import asyncio, sys
import modelmart.api.http as mh
import modelmart.api.surface as ms


class _Resume:
    def __init__(self, coro, first):
        self.coro, self.first = coro, first

    def __await__(self):
        value = self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                self.coro.close()
                raise
            except BaseException as exc:
                try:
                    value = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def send_stream(send, receive, frames, headers=None, content_type=b"text/event-stream; charset=utf-8"):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), *mh.STREAM_HEADERS, *mh._headers(headers)]})

    async def pump():
        it, buf = frames.__aiter__(), []
        while True:
            coro = it.__anext__()
            try:
                first = coro.send(None)
            except StopIteration as stop:
                if stop.value:
                    buf.append(stop.value)
                continue
            except StopAsyncIteration:
                break
            if buf:
                await send({"type": "http.response.body", "body": b"".join(buf), "more_body": True})
                buf = []
            try:
                frame = await _Resume(coro, first)
            except StopAsyncIteration:
                break
            if frame:
                buf.append(frame)
        await send({"type": "http.response.body", "body": b"".join(buf), "more_body": False})

    async def watch():
        while (await receive())["type"] != "http.disconnect":
            pass

    producer, watcher = asyncio.ensure_future(pump()), asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (producer, watcher):
            if not task.done():
                task.cancel()
        await asyncio.gather(producer, watcher, return_exceptions=True)
        await frames.aclose()
    if producer in done and producer.exception() is not None:
        raise producer.exception()
    return producer in done


ms.send_stream = send_stream
from modelmart.cli.main import main
sys.exit(main(sys.argv[1:]))
