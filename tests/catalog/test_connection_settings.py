"""A deployment's ``tls:``, ``proxy:`` and ``limits:`` keys and its name, from the catalog
into its ``ProviderConfig``, with errors that say where and what was wrong."""

from __future__ import annotations

import pytest

from modelmart.catalog.loader import CatalogError, parse_catalog
from modelmart.providers.base import TLSSettings, UpstreamLimits


def config(**deployment):
    catalog = parse_catalog({"bundled_model": False, "models": {"m": {
        "provider": "openai", "api_key": "k", **deployment}}})
    return catalog.get("m").deployments[0].config


def test_defaults_and_the_deployments_name():
    cfg = config()
    assert cfg.name == "m/openai-0" and cfg.label == "deployment 'm/openai-0'"
    assert cfg.limits == UpstreamLimits() and cfg.tls is None and cfg.proxy is None
    assert config(name="primary").name == "primary"


def test_limits_in_their_units():
    cfg = config(limits={"header_kb": 16, "headers": 200, "body_mb": 0.5, "event_mb": "2"})
    assert cfg.limits == UpstreamLimits(header_bytes=16 << 10, headers=200,
                                        body_bytes=1 << 19, event_bytes=2 << 20)


@pytest.mark.parametrize("limits,message", [
    ({"body": 8}, r"unknown key\(s\) body"), ({"body_mb": 0}, "must be a number > 0"),
    ({"headers": 1.5}, "whole number"), ({"event_mb": True}, "must be a number > 0"),
])
def test_bad_limits(limits, message):
    with pytest.raises(CatalogError, match=message):
        config(limits=limits)


def test_tls(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    assert config(tls={"ca_file": str(ca)}).tls == TLSSettings(ca_file=str(ca))
    assert config(tls={"verify": False}).tls == TLSSettings(verify=False)
    assert config(tls={"ca_dir": str(tmp_path), "verify": "true"}).tls.ca_dir == str(tmp_path)
    with pytest.raises(CatalogError, match=r"models\.m\.deployments\[0\]\.tls\.ca_file: no such"):
        config(tls={"ca_file": str(tmp_path / "missing.pem")})
    with pytest.raises(CatalogError, match="verify: must be true or false"):
        config(tls={"verify": "maybe"})


def test_proxy():
    assert config(proxy="http://u:p@proxy:3128").proxy == "http://u:p@proxy:3128"
    assert config(proxy=False).proxy == "" and config(proxy="").proxy == ""
    with pytest.raises(CatalogError, match="https and socks proxies are not supported") as info:
        config(proxy="socks5://user:hunter2@proxy:1080")
    assert "hunter2" not in str(info.value)  # the error never quotes a password
