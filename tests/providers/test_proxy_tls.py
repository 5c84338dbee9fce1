"""Upstream calls through HTTP proxies (the environment's or a deployment's own) and with the
TLS trust an operator configures: a forward proxy (``tests/fakes/proxy.py``) and an https
upstream whose certificate comes from a CA made here (``trustme``)."""

from __future__ import annotations

import base64
import ssl

import pytest
import trustme

from modelmart.core.errors import GatewayError
from modelmart.core.types import Message, Request, TextBlock
from modelmart.providers.base import ProviderConfig, TLSSettings
from modelmart.providers.http import new_session
from modelmart.providers.openai import OpenAIProvider
from tests.fakes.hostile import HostileUpstream
from tests.fakes.proxy import ForwardProxy

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
              "all_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
REQ = Request(model="m", messages=[Message("user", [TextBlock("hi")])], max_tokens=5)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def https_upstream(ca):
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_tls)
    fake = HostileUpstream(tls=server_tls).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def http_upstream():
    fake = HostileUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def proxy():
    fake = ForwardProxy().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, proxy):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    proxy.reset()


async def ask(upstream, *, tls=None, proxy=None, name="dep"):
    """One completion from ``upstream`` through a session made now (it reads the
    environment's proxies when it is made); the error if it fails."""
    http = new_session()
    cfg = ProviderConfig("openai", "ok", base_url=upstream.base_url + "/v1", name=name,
                         tls=tls, proxy=proxy, connect_timeout=3)
    provider = OpenAIProvider(cfg, http)
    try:
        first = await provider.complete(REQ)
        second = await provider.complete(REQ)  # over the same kept-alive connection
        return [first.content[0].text, second.content[0].text]
    except GatewayError as err:
        return err
    finally:
        await http.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
async def test_https_goes_through_a_connect_tunnel_with_the_proxys_credentials(
        var, monkeypatch, proxy, https_upstream, ca_file):
    monkeypatch.setenv(var, f"http://gw%20user:p%40ss@127.0.0.1:{proxy.port}")
    got = await ask(https_upstream, tls=TLSSettings(ca_file=ca_file))
    assert got == ["fine", "fine"]
    assert proxy.tunnels == 1  # two requests, one kept-alive tunnel
    assert proxy.lines == [f"CONNECT 127.0.0.1:{https_upstream.port} HTTP/1.1"]
    assert proxy.auth == [basic("gw user", "p@ss")]


def test_the_tunnel_works_on_uvloop_too(monkeypatch, proxy, https_upstream, ca_file):
    import uvloop  # the gateway's own loop

    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    got = uvloop.run(ask(https_upstream, tls=TLSSettings(ca_file=ca_file)))
    assert got == ["fine", "fine"] and proxy.tunnels == 1


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_bypasses_it(no_proxy, monkeypatch, proxy, https_upstream, ca_file):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", no_proxy)
    got = await ask(https_upstream, tls=TLSSettings(ca_file=ca_file))
    assert got == ["fine", "fine"] and proxy.lines == []


async def test_plain_http_goes_to_the_proxy_in_absolute_form(monkeypatch, proxy, http_upstream):
    monkeypatch.setenv("HTTP_PROXY", f"http://u:pw@127.0.0.1:{proxy.port}")
    got = await ask(http_upstream)
    assert got == ["fine", "fine"] and proxy.tunnels == 0
    assert proxy.lines[0] == (f"POST http://127.0.0.1:{http_upstream.port}/v1/chat/completions"
                              " HTTP/1.1")
    assert proxy.auth[0] == basic("u", "pw")
    path, headers, _ = http_upstream.requests[-1]
    assert headers["host"] == f"127.0.0.1:{http_upstream.port}"


async def test_a_deployments_own_proxy_overrides_the_environment(
        monkeypatch, proxy, https_upstream, http_upstream, ca_file):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    got = await ask(https_upstream, tls=TLSSettings(ca_file=ca_file), proxy=proxy.url)
    assert got == ["fine", "fine"] and proxy.tunnels == 1
    assert await ask(http_upstream, proxy="") == ["fine", "fine"]  # none at all: direct
    err = await ask(http_upstream)  # the environment's dead proxy
    assert isinstance(err, GatewayError) and "connection refused" in err.message


async def test_a_proxy_that_refuses_is_a_502_that_does_not_show_it(https_upstream, ca_file):
    strict = ForwardProxy(credentials=("user", "right")).start()
    try:
        url = f"http://user:wrong-password@127.0.0.1:{strict.port}"
        err = await ask(https_upstream, tls=TLSSettings(ca_file=ca_file), proxy=url)
    finally:
        strict.stop()
    assert isinstance(err, GatewayError) and err.status == 502
    assert err.message == ("deployment 'dep': the connection failed (the proxy refused the "
                           "tunnel (HTTP 407))")
    assert "wrong-password" not in err.detail


async def test_an_untrusted_certificate_is_a_clear_502(https_upstream):
    err = await ask(https_upstream)  # the system's trust store knows nothing of this CA
    assert isinstance(err, GatewayError) and err.status == 502
    assert err.message.startswith("deployment 'dep': the connection failed (its TLS "
                                  "certificate is not trusted")
    assert "127.0.0.1" not in err.message


async def test_ssl_cert_file_is_respected(monkeypatch, https_upstream, ca_file):
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert await ask(https_upstream) == ["fine", "fine"]


async def test_a_deployment_may_turn_verification_off(https_upstream):
    assert await ask(https_upstream, tls=TLSSettings(verify=False)) == ["fine", "fine"]
