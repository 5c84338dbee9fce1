"""Where a request to an upstream URL goes and how its connection is opened: directly, or
through an HTTP proxy (a CONNECT tunnel for https targets, absolute-form requests for http
ones), and with which TLS trust.

Proxies follow the environment as ``urllib.request`` reads it (``HTTPS_PROXY``,
``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, lowercase first), or a deployment's own
``proxy:``. Everything here runs once per new connection (or once per URL), never per request.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.request
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

_MAX_CONNECT_REPLY = 16 * 1024  # a proxy's answer to CONNECT: a status line and a few headers


class ProxyError(ConnectionError):
    """The proxy refused or broke the connection to the upstream."""


class Proxy:
    """An ``http://[user:password@]host[:port]`` proxy."""

    __slots__ = ("host", "port", "auth_line")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme != "http" or not parts.hostname:
            # Only the scheme: the URL itself may hold a password.
            raise ProxyError(f"unsupported proxy scheme {parts.scheme!r}: only http:// "
                             "proxies are supported")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.auth_line = b""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode()).decode()
            self.auth_line = f"proxy-authorization: Basic {token}\r\n".encode("latin-1")


def environment_proxies() -> dict[str, str]:
    """``urllib.request.getproxies()``: scheme (``http``, ``https``, ``all``, and ``no`` for
    the bypass list) → proxy URL."""
    return urllib.request.getproxies()


def only_proxy(url: str) -> dict[str, str]:
    """A deployment's own ``proxy:`` for every target (``""``: no proxy at all)."""
    return {"all": url} if url else {}


def proxy_for(scheme: str, host: str, port: int, proxies: dict[str, str]) -> Proxy | None:
    """The proxy a request to ``scheme://host:port`` goes through, or None (direct)."""
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    if "no" in proxies and urllib.request.proxy_bypass_environment(f"{host}:{port}", proxies):
        return None
    return Proxy(url)


class Target:
    """What a URL resolves to, parsed once per URL string: where to connect (the upstream,
    or the proxy that ``proxies`` name for it) and the constant parts of a request head."""

    __slots__ = ("key", "scheme", "host", "port", "proxy", "head")

    def __init__(self, url: str, proxies: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not the URL itself: it may hold a password.
            raise ValueError(f"not an http(s) URL (scheme {parts.scheme!r})")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.key = (self.scheme, self.host, self.port)
        self.proxy: Proxy | None = proxy_for(self.scheme, self.host, self.port, proxies)
        authority = parts.netloc.rpartition("@")[2]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        extra = b""
        if self.proxy is not None and self.scheme == "http":
            # Through a proxy, a plain-http request names its whole target.
            path = f"http://{authority}{path}"
            extra = self.proxy.auth_line
        # The path goes out exactly as given (Bedrock signs its percent-encoded form).
        # head: the request target, the lines to add without a host header of the caller's,
        # and those to add with one.
        self.head = (path.encode("latin-1"),
                     b"host: %s\r\n%s" % (authority.encode("latin-1"), extra), extra)


def tls_context(settings: Any = None) -> ssl.SSLContext:
    """A client TLS context: the system's trust store (OpenSSL reads ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``), or the CA file / directory of a deployment's ``tls:`` settings."""
    ca_file = getattr(settings, "ca_file", None)
    ca_dir = getattr(settings, "ca_dir", None)
    context = ssl.create_default_context(cafile=ca_file, capath=ca_dir)
    if settings is not None and not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Tunnel(asyncio.Protocol):
    """Sends ``CONNECT host:port`` and waits for the proxy's 2xx."""

    def __init__(self, request: bytes, ready: asyncio.Future) -> None:
        self.request, self.ready = request, ready
        self.head = bytearray()

    def connection_made(self, transport) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.ready.done():
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > _MAX_CONNECT_REPLY:
                self.ready.set_exception(ProxyError("the proxy's answer to CONNECT is too long"))
            return
        line = bytes(self.head[:self.head.find(b"\r\n")])
        parts = line.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if not line.startswith(b"HTTP/1.") or not 200 <= status < 300:
            what = f"HTTP {status}" if status else "not an HTTP reply"
            self.ready.set_exception(ProxyError(f"the proxy refused the tunnel ({what})"))
        elif end + 4 != len(self.head):
            self.ready.set_exception(ProxyError("the proxy sent data before the tunnel was up"))
        else:
            self.ready.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_exception(
                ProxyError("the proxy closed the connection before the tunnel was up"))


async def open_tunnel(loop: asyncio.AbstractEventLoop, proxy: Proxy, host: str, port: int,
                      tls: ssl.SSLContext, protocol: asyncio.Protocol) -> Any:
    """A TLS connection to ``host:port`` through ``proxy``'s CONNECT tunnel, handed to
    ``protocol`` (its ``connection_made`` is called). Returns the TLS transport."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n".encode("latin-1")
               + proxy.auth_line + b"\r\n")
    ready = loop.create_future()
    raw, _ = await loop.create_connection(lambda: _Tunnel(request, ready), proxy.host,
                                          proxy.port)
    try:
        await ready
        transport = await loop.start_tls(raw, protocol, tls, server_hostname=host)
    except BaseException:
        raw.abort()
        raise
    protocol.connection_made(transport)
    return transport


async def open_connection(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any],
                          target: Target, tls: ssl.SSLContext | None) -> Any:
    """Open a connection for ``target`` and return its protocol instance (made by
    ``factory``); ``tls`` for an https target."""
    host, port, proxy = target.host, target.port, target.proxy
    if proxy is None:
        _, conn = await loop.create_connection(factory, host, port, ssl=tls,
                                               server_hostname=host if tls else None)
        return conn
    if target.scheme == "https":
        conn = factory()
        await open_tunnel(loop, proxy, host, port, tls, conn)
        return conn
    # Plain http through the proxy: requests in absolute form on a connection to it.
    _, conn = await loop.create_connection(factory, proxy.host, proxy.port)
    return conn
