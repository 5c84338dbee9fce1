"""A forward HTTP proxy on loopback, as squid or a corporate proxy behaves (RFC 9110
§9.3.6 CONNECT, RFC 9112 §3.2.2 absolute-form): ``CONNECT host:port`` opens a tunnel that
relays bytes both ways; a request in absolute form (``POST http://host:port/path``) is
relayed to that host. With ``credentials=(user, password)`` it answers 407 to a request
without the matching ``Proxy-Authorization: Basic``.

Counts tunnels and records each request line and Proxy-Authorization value. Never imports
modelmart. Runs on its own loop in a thread, like the other fakes.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from urllib.parse import urlsplit

from .script import free_port


class ForwardProxy:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.port = free_port()
        self.tunnels = 0
        self.lines: list[str] = []
        self.auth: list[str | None] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ForwardProxy":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        self.tunnels = 0
        self.lines.clear()
        self.auth.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        auth = next((line.split(":", 1)[1].strip() for line in lines[1:]
                     if line.lower().startswith("proxy-authorization:")), None)
        self.lines.append(lines[0])
        self.auth.append(auth)
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            if auth != f"Basic {token}":
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"proxy-authenticate: Basic realm=\"fake\"\r\n"
                             b"content-length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            parts = urlsplit(target)
            up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            up_writer.write(head)  # as it came: the origin takes the absolute form too
        await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
