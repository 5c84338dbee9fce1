"""modelmart's own HTTP/1.1 server for ASGI 3 apps (``http`` and ``lifespan``), on asyncio
protocols parsed by ``httptools`` (llhttp). It imports nothing else of modelmart."""

from .server import Server

__all__ = ["Server"]
