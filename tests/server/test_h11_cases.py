"""Test cases of h11 (python-hyper/h11 ``h11/tests/test_io.py``, ``test_connection.py``,
``test_headers.py``) that concern a server, ported as our own and run over a real socket
against modelmart's server and uvicorn: requests a server must refuse, and how a response
is framed for HTTP/1.0 clients and for HEAD.

Both servers parse with llhttp, stricter than h11 in places marked ``STRICTER``: an obsolete
folded header line, whitespace after a chunk size or in a chunk extension, a control
character in a header value are refused (h11 accepts them). Where uvicorn differs from h11's framing and we follow h11, ``UVICORN_DIFFERS``."""

from __future__ import annotations

import pytest

from .asgi import Response
from .serving import KINDS, responses, serve, talk

HELLO = Response("Hello, world", media_type="text/plain")


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


async def stream(scope, receive, send):
    """A reply of unknown length: two body messages, no content-length."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"12345", "more_body": True})
    await send({"type": "http.response.body", "body": b"67890"})


async def echo(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await Response(body)(scope, receive, send)


def refused(kind: str, data: bytes, app=HELLO) -> bool:
    """Whether the server answers ``data`` with a 400 (or just closes) and no app reply."""
    with serve(app, kind) as served:
        out, closed = talk(served.port, data)
    return closed and (out == b"" or out.startswith(b"HTTP/1.1 400 ")) and b"Hello" not in out


@pytest.mark.parametrize("data", [b"\x00", b"\x20", b"\x16\x03\x01\x00\xa5"],
                         ids=["nul", "space", "tls-client-hello"])
def test_early_detection_of_invalid_request(kind, data):
    # h11: detected before even a CRLF arrives.
    assert refused(kind, data)


@pytest.mark.parametrize("head", [
    b"HEAD /foo HTTP/1.1\r\n  folded: line\r\n\r\n",
    b"HEAD /foo HTTP/1.1\r\nfoo  : line\r\n\r\n",
    b"HEAD /foo HTTP/1.1\r\nfoo\t: line\r\n\r\n",
    b"HEAD /foo HTTP/1.1\r\n: line\r\n\r\n",
    b"HEAD /foo HTTP/1.1\r\nHost: foo\x00bar\r\n\r\n",
    b"HEAD /foo HTTP/1.1 xxxxxx\r\nHost: a\r\n\r\n",
    # STRICTER: h11 unfolds an obsolete folded line; llhttp refuses it.
    b"HEAD /foo HTTP/1.1\r\nHost: example.com\r\nSome: multi-line\r\n header\r\n\r\n",
], ids=["first-line-folded", "space-before-colon", "tab-before-colon", "empty-name",
        "nul-in-value", "garbage-after-request-line", "obs-fold"])
def test_malformed_header_lines_are_refused(kind, head):
    assert refused(kind, head)


@pytest.mark.parametrize("char", [b"\x00", b"\x20", b"\x7f", b"\xee"])
def test_non_vchar_in_path_is_refused(kind, char):
    assert refused(kind, b"HEAD /a" + char + b"b HTTP/1.1\r\nHost: foobar\r\n\r\n")


CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("body", [
    b"9" * 100 + b"\r\nxxx",            # a chunk size past any integer
    b"10\x00\r\nxxx",                   # a NUL in the chunk size
    b"3\r\nxxx__1a\r\n",                # chunk data not followed by CRLF
    b"3\r\nxxx\r_1a\r\n",
    b"3\r\nxxx_\n1a\r\n",
    b"5   \t \r\n01234\r\n0\r\n\r\n",  # STRICTER: h11 takes whitespace after a size
    b"5; hello=there\r\nxxxxx\r\n0\r\n\r\n",  # STRICTER: and after the ";" of an extension
], ids=["size-overflow", "nul-in-size", "no-crlf-after-data", "cr-only", "lf-only",
        "space-after-size", "space-in-extension"])
def test_malformed_chunked_bodies_are_refused(kind, body):
    assert refused(kind, CHUNKED + body, app=echo)


def test_chunked_bodies(kind):
    body = (b"5\r\n01234\r\n10\r\n0123456789abcdef\r\n" + b"aA\r\n" + b"x" * 0xAA + b"\r\n"
            + b"5;hello=there\r\nxxxxx\r\n0\r\nSome: header\r\n\r\n")
    with serve(echo, kind) as served:
        out, _ = talk(served.port, CHUNKED + body)
    (head, reply), = responses(out)
    assert head.startswith(b"HTTP/1.1 200") and reply == b"012340123456789abcdef" + b"x" * 0xAA + b"xxxxx"


@pytest.mark.parametrize("fields", [
    b"Content-Length: asdf\r\n",
    b"Content-Length: 1x\r\n",
    b"Content-Length: 1\r\nContent-Length: 2\r\n",
    b"Content-Length: " + b"1" * 21 + b"\r\n",
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",  # h11: 501, as no framing it can read
], ids=["not-a-number", "trailing-garbage", "conflicting", "too-large", "with-chunked",
        "unknown-coding"])
def test_bad_request_framing_is_refused(kind, fields):
    assert refused(kind, b"POST / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\nabc", app=echo)


def test_server_talking_to_http10_client(kind):
    # No content-length and an HTTP/1.0 peer: close-delimited, never chunked.
    with serve(stream, kind) as served:
        out, closed = talk(served.port, b"GET / HTTP/1.0\r\n\r\n", quiet=2)
    head, _, body = out.partition(b"\r\n\r\n")
    assert closed
    if kind == "modelmart":
        assert body == b"1234567890"
        assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower()
    else:  # UVICORN_DIFFERS: it sends HTTP/1.0 clients chunked bodies
        assert b"transfer-encoding: chunked" in head.lower()


def test_http10_client_with_a_content_length(kind):
    with serve(echo, kind) as served:
        out, closed = talk(served.port, b"POST / HTTP/1.0\r\nContent-Length: 10\r\n\r\n1",
                           b"234567890", quiet=2)
    assert closed and out.endswith(b"\r\n\r\n1234567890")


@pytest.mark.parametrize("user_headers", [[(b"transfer-encoding", b"chunked")], [],
                                          [(b"transfer-encoding", b"chunked"),
                                           (b"content-length", b"100")]],
                         ids=["chunked", "none", "chunked-and-length"])
def test_automatic_transfer_encoding_in_response(kind, user_headers):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": user_headers})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, kind) as served:
        out11, _ = talk(served.port, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        out10, closed10 = talk(served.port, b"GET / HTTP/1.0\r\n\r\n", quiet=2)
    head11 = out11.partition(b"\r\n\r\n")[0].lower()
    head10, _, body10 = out10.partition(b"\r\n\r\n")
    if kind == "modelmart" or user_headers[1:] == []:
        # HTTP/1.1: chunked, whatever the app said; h11: "Transfer-Encoding wins".
        assert b"transfer-encoding: chunked" in head11 and b"content-length" not in head11
    else:  # UVICORN_DIFFERS: it passes the app's content-length on beside the chunking
        assert b"transfer-encoding: chunked" in head11
    if kind == "modelmart":
        # HTTP/1.0: no framing headers, connection: close, the body as is.
        assert b"transfer-encoding" not in head10.lower() and closed10
        assert b"connection: close" in head10.lower() and body10 == b"12345"


def test_head_framing_headers(kind):
    # HEAD gets the framing headers GET would get (h11: "This used to give different
    # headers for HEAD and GET").
    with serve(stream, kind) as served:
        get, _ = talk(served.port, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        head, closed = talk(served.port, b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert b"transfer-encoding: chunked" in get.lower()
    assert head.endswith(b"\r\n\r\n") and not closed  # no body, and the connection lives on
    if kind == "modelmart":
        assert b"transfer-encoding: chunked" in head.lower()
    else:  # UVICORN_DIFFERS: no framing header at all for HEAD
        assert b"transfer-encoding" not in head.lower()


def test_garbage_in_cookies(kind):
    # STRICTER: h11 lets a \x01 in a header value pass (its issue 57); llhttp refuses it.
    assert refused(kind, b"GET / HTTP/1.1\r\nHost: foo\r\n"
                         b"Set-Cookie: ___utmvafIumyLc=kUd\x01UpAt; path=/; Max-Age=900\r\n\r\n")
