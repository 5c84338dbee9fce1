"""End to end: the real gateway in front of a hostile upstream (``tests/fakes/hostile.py``),
the official SDKs as clients. What the client sees is a clear error in its own dialect that
names the deployment, never the upstream's URL, never a credential of the gateway's; the
ledger, the log and the admin API's model health keep nothing secret either."""

from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import trustme

from tests.fakes.hostile import HostileUpstream
from tests.fakes.proxy import ForwardProxy
from tests.harness import GatewayServer
from tests.marketplace.helpers import ensure_admin_key, get_usage, poll

OA_KEY = "sk-gw-openai-" + "K" * 32
AN_KEY = "sk-ant-api03-" + "A" * 40
HEADER_SECRET = "tenant-secret-value-42"
URL_PASSWORD = "url-secret-99"
SECRETS = (OA_KEY, AN_KEY, HEADER_SECRET, URL_PASSWORD, "K" * 32, "A" * 40)
COST = {"input": "1.00", "output": "1.00", "cache_read": "1.00", "cache_write": "1.00"}
HI = [{"role": "user", "content": "hi"}]


def _model(provider: str, base_url: str, upstream_model: str, name: str, **extra) -> dict:
    key = OA_KEY if provider == "openai" else AN_KEY
    return {"provider": provider, "base_url": base_url, "model": upstream_model,
            "api_key": key, "name": name, "headers": {"x-tenant-auth": HEADER_SECRET},
            "cost": COST, "price": {"markup": "0.5"}, "retries": {"attempts": 1},
            "timeouts": {"connect": 2, "first_token": 10, "total": 20}, **extra}


@pytest.fixture(scope="module")
def tls_files():
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    folder = tempfile.TemporaryDirectory()
    ca_file = Path(folder.name) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield server_tls, str(ca_file)
    folder.cleanup()


@pytest.fixture(scope="module")
def upstreams(tls_files):
    plain, secure = HostileUpstream().start(), HostileUpstream(tls=tls_files[0]).start()
    proxy = ForwardProxy().start()
    yield plain, secure, proxy
    for fake in (plain, secure, proxy):
        fake.stop()


@pytest.fixture(scope="module")
def gateway(upstreams, tls_files):
    plain, secure, proxy = upstreams
    oa, an = f"{plain.base_url}/v1", plain.base_url
    models = {
        "body-300mb": _model("openai", oa, "body:314572800", "body-dep",
                             limits={"body_mb": 8}),
        "sse-100mb": _model("openai", oa, "sse_line:104857600", "sse-dep",
                            limits={"event_mb": 1}),
        "head-200mb": _model("anthropic", an, "head_bytes:209715200", "head-dep"),
        "unreachable": _model("openai", f"http://gwuser:{URL_PASSWORD}@127.0.0.1:9/v1",
                              "ok", "unreachable-dep"),
        "secure": _model("openai", f"{secure.base_url}/v1", "ok", "secure-dep",
                         tls={"ca_file": tls_files[1], "verify": True}, proxy=proxy.url),
    }
    for status in (304, 399, 600, 999):
        models[f"status-{status}"] = _model("openai", oa, f"status:{status}", f"s{status}-dep")
    for value in ("inf", "1e400", "nan", "-5", "1e12"):
        models[f"retry-{value}"] = _model("openai", oa, f"retry:{value}", f"r{value}-dep")
    for status in (400, 401, 500):
        models[f"echo-oa-{status}"] = _model("openai", oa, f"echo:{status}", f"echo-oa-{status}")
        models[f"echo-an-{status}"] = _model("anthropic", an, f"echo:{status}",
                                             f"echo-an-{status}")
    tmp = tempfile.TemporaryDirectory(prefix="mm-untrusted-")
    db = f"sqlite:///{Path(tmp.name) / 'gw.db'}"
    admin_key = ensure_admin_key(db)
    server = GatewayServer({"bundled_model": False, "models": models}, database_url=db).start()
    server.admin_key = admin_key
    yield server
    server.stop()
    tmp.cleanup()


@pytest.fixture
def oa(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0,
                         timeout=60)


@pytest.fixture
def an(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0,
                               timeout=60)


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked in {text[:300]!r}"


def _ledger_error(gateway, err) -> str:
    request_id = err.response.headers["x-request-id"]
    row = poll(lambda: get_usage(gateway.database_url, request_id), 5.0, 0.05, "the ledger row")
    return row.error or ""


@pytest.mark.parametrize("model,stream,bound", [
    ("body-300mb", False, "a reply body over 8 MiB (the bound set by limits.body_mb)"),
    ("sse-100mb", True, "a stream event over 1 MiB (the bound set by limits.event_mb)"),
])
def test_a_hostile_reply_is_a_502_that_names_the_deployment_and_the_bound(
        oa, gateway, upstreams, model, stream, bound):
    with pytest.raises(openai.APIStatusError) as info:
        oa.chat.completions.create(model=model, messages=HI, stream=stream)
    err = info.value
    assert err.status_code == 502 and bound in err.message
    assert f"deployment '{model.split('-')[0]}-dep'" in err.message
    assert upstreams[0].base_url.split("//")[1] not in err.message
    assert bound in _ledger_error(gateway, err)


def test_a_200_mb_header_reaches_an_anthropic_client_as_a_502(an):
    with pytest.raises(anthropic.APIStatusError) as info:
        an.messages.create(model="head-200mb", max_tokens=5, messages=HI)
    assert info.value.status_code == 502
    assert "deployment 'head-dep' sent a reply head over 256 KiB" in info.value.message


@pytest.mark.parametrize("status", [304, 399, 600, 999])
def test_a_status_that_is_no_final_error_status_never_reaches_the_client(oa, status):
    with pytest.raises(openai.APIStatusError) as info:
        oa.chat.completions.create(model=f"status-{status}", messages=HI)
    assert info.value.status_code == 502
    assert f"answered HTTP {status}, which is not a final error status" in info.value.message


@pytest.mark.parametrize("value,header", [("inf", None), ("1e400", None), ("nan", None),
                                          ("-5", None), ("1e12", "86400")])
def test_an_upstream_retry_after_is_passed_on_sane_or_not_at_all(oa, value, header):
    # Before: inf and nan made the gateway fail with a 500 (round() of them raises).
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model=f"retry-{value}", messages=HI)
    assert info.value.response.headers.get("retry-after") == header


def test_a_url_with_credentials_is_never_shown_nor_the_address(oa, gateway):
    with pytest.raises(openai.APIStatusError) as info:
        oa.chat.completions.create(model="unreachable", messages=HI)
    err = info.value
    assert err.status_code == 502
    assert err.message.endswith("deployment 'unreachable-dep': the connection failed "
                                "(connection refused)")
    ledger = _ledger_error(gateway, err)
    assert "127.0.0.1:9" not in ledger and URL_PASSWORD not in ledger


def test_tls_and_a_proxy_of_the_deployments_own(oa, upstreams):
    proxy = upstreams[2]
    proxy.reset()
    reply = oa.chat.completions.create(model="secure", messages=HI)
    assert reply.choices[0].message.content == "fine"
    assert proxy.tunnels == 1 and proxy.lines[0].startswith("CONNECT 127.0.0.1:")


@pytest.mark.parametrize("status", [400, 401, 500])
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_echoing_the_gateways_credentials_leaks_none_of_them(
        oa, an, gateway, caplog, status, stream):
    caplog.set_level(logging.DEBUG)
    errors = []
    with pytest.raises(openai.APIStatusError) as info:
        oa.chat.completions.create(model=f"echo-oa-{status}", messages=HI, stream=stream)
    errors.append(info.value)
    with pytest.raises(anthropic.APIStatusError) as info:
        an.messages.create(model=f"echo-an-{status}", max_tokens=5, messages=HI, stream=stream)
    errors.append(info.value)
    for err in errors:
        if status == 401:  # the gateway's key refused: a 502 that quotes nothing upstream
            assert err.status_code == 502 and "rejected the gateway's credentials" in err.message
        else:
            assert err.status_code == status and "you sent" in err.message
            assert "[redacted]" in err.message
        _assert_clean(str(err), err.response.text, _ledger_error(gateway, err))
    _assert_clean(caplog.text)
    health = httpx.get(f"{gateway.url}/admin/v1/models", timeout=10,
                       headers={"authorization": f"Bearer {gateway.admin_key}"}).json()
    deployments = {d["name"]: d["health"] for m in health for d in m["deployments"]}
    for kind in ("oa", "an"):
        last = deployments[f"echo-{kind}-{status}"]["last_error"]
        if status != 400:  # a 4xx about the request says nothing about the upstream's health
            assert "you sent" in last
        _assert_clean(str(last))
