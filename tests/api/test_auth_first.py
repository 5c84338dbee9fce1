"""Issue #12: a request is authenticated from its headers, before its body is read. A client
without a valid key that announces a 30 MiB body gets its 401/403 at once, without sending
a byte of it, and its connection is closed: nobody can make the gateway hold memory without
a key."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import UPSTREAM_KEY
from tests.harness import GatewayServer

BIG = 30 * 1024 * 1024


@pytest.fixture(scope="module")
def gateway(fake_openai):
    catalog = {"bundled_model": False, "models": {"m": {
        "provider": "openai", "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY,
        "cost": {"input": "1", "output": "1", "cache_read": "1", "cache_write": "1"}}}}
    server = GatewayServer(catalog).start()
    yield server
    server.stop()


def _answer(gateway, head: bytes) -> bytes:
    """Send ``head`` (no body) and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(head)
        data = b""
        while True:
            chunk = sock.recv(65536)  # a timeout here means the server waited for the body
            if not chunk:
                return data
            data += chunk


@pytest.mark.parametrize("path,auth", [
    ("/v1/chat/completions", b""),
    ("/v1/chat/completions", b"authorization: Bearer mm-not-a-key\r\n"),
    ("/v1/messages", b"x-api-key: mm-not-a-key\r\nanthropic-version: 2023-06-01\r\n"),
    ("/v1/responses", b""),
    ("/v1/embeddings", b"authorization: Bearer mm-not-a-key\r\n"),
])
def test_no_valid_key_is_refused_before_the_body(gateway, path, auth):
    head = (b"POST %s HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%s\r\n" % (path.encode(), BIG, auth))
    answer = _answer(gateway, head)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_an_unknown_sigv4_key_is_refused_before_the_body(gateway):
    auth = (b"authorization: AWS4-HMAC-SHA256 Credential=AKIANOTAKEY0000/20261205/us-east-1/"
            b"bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64 +
            b"\r\nx-amz-date: 20261205T000000Z\r\n")
    head = (b"POST /model/m/converse HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%s\r\n" % (BIG, auth))
    answer = _answer(gateway, head)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"UnrecognizedClientException" in answer


def test_a_valid_key_still_sends_its_body(gateway):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer %s\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
            % (gateway.key.encode(), len(body)))
    answer = _answer(gateway, head + body)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
