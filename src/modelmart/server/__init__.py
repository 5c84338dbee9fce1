"""modelmart's own HTTP/1.1 server for ASGI 3 apps (``http`` and ``lifespan``), on asyncio
protocols parsed by ``httptools`` (llhttp). It imports nothing else of modelmart.

- ``server.py``: ``Server`` — the listener, lifespan, timeout sweep, graceful shutdown
- ``listener.py``: accepting connections; ``capacity.py``: caps on them, eviction
- ``connection.py``: one connection — parsing, flow control, the app's requests in order
- ``cycle.py``: one request and its response — ASGI ``receive``/``send``, framing
- ``limits.py``: ``Limits``, every bound in one place; ``wire.py``: bytes on the wire
"""

from .limits import Limits, default_max_connections, raise_nofile_limit
from .server import Server

__all__ = ["Limits", "Server", "default_max_connections", "raise_nofile_limit"]
