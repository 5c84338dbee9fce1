"""The admin API's input checks (issue #12): every field of a body is type-checked, numbers
that go into 64-bit columns are bounded, money is a decimal string, booleans are JSON
booleans, unknown fields and query parameters are refused; each with a 400 that names the
field, in OpenAI's error shape. Each bad value here was a 500 or was silently misread."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx
import pytest

from modelmart.store.base import open_store
from modelmart.tenancy import accounts
from tests.harness import GatewayServer

CATALOG = {"bundled_model": False, "models": {"m": {
    "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
    "price": {"input": 1, "output": 2, "caching": False}}}}


def _admin_key(url: str) -> str:
    async def make() -> str:
        store = await open_store(url)
        try:
            return await accounts.ensure_admin_key(store)
        finally:
            await store.close()
    return asyncio.run(make())


@pytest.fixture(scope="module")
def gw():
    tmp = tempfile.TemporaryDirectory(prefix="mm-admin-input-")
    db = f"sqlite:///{Path(tmp.name) / 'admin.db'}"
    admin_key = _admin_key(db)
    server = GatewayServer(CATALOG, database_url=db).start()
    server.admin = httpx.Client(base_url=f"{server.url}/admin/v1", timeout=10,
                                headers={"authorization": f"Bearer {admin_key}"})
    yield server
    server.admin.close()
    server.stop()
    tmp.cleanup()


def refused(resp: httpx.Response, param: str, status: int = 400) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["param"] == param and param in err["message"], err
    return err["message"]


@pytest.mark.parametrize("body, param", [
    ({"name": 5}, "name"),
    ({"name": ["acme"]}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"name": "x" * 201}, "name"),
    ({}, "name"),
    ({"name": "c", "rpm": 2**63}, "rpm"),
    ({"name": "c", "rpm": 18446744073709551615}, "rpm"),
    ({"name": "c", "rpm": -1}, "rpm"),
    ({"name": "c", "rpm": 0}, "rpm"),
    ({"name": "c", "rpm": True}, "rpm"),
    ({"name": "c", "rpm": 1.5}, "rpm"),
    ({"name": "c", "tpm": "100"}, "tpm"),
    ({"name": "c", "colour": "red"}, "colour"),
])
def test_customer_fields_are_checked(gw, body, param):
    refused(gw.admin.post("/customers", json=body), param)


def test_customer_limits_at_the_bounds_are_kept(gw):
    resp = gw.admin.post("/customers", json={"name": "bounds", "rpm": 2**63 - 1, "tpm": 60.0})
    assert resp.status_code == 201, resp.text
    assert (resp.json()["rpm"], resp.json()["tpm"]) == (2**63 - 1, 60)


@pytest.fixture(scope="module")
def customer(gw):
    assert gw.admin.post("/customers", json={"name": "keyed"}).status_code == 201
    return "keyed"


@pytest.mark.parametrize("fields, param", [
    ({"budget_usd": "NaN"}, "budget_usd"),
    ({"budget_usd": "Infinity"}, "budget_usd"),
    ({"budget_usd": "1e30"}, "budget_usd"),
    ({"budget_usd": "1000000"}, "budget_usd"),
    ({"budget_usd": "-5"}, "budget_usd"),
    ({"budget_usd": "0.00"}, "budget_usd"),
    ({"budget_usd": "0.0000000000001"}, "budget_usd"),
    ({"budget_usd": 25}, "budget_usd"),  # money is a decimal string, never a JSON number
    ({"budget_usd": 1e30}, "budget_usd"),
    ({"period": "day"}, "period"),  # a period needs a budget
    ({"budget_usd": "5", "period": "week"}, "period"),
    ({"budget_usd": "5", "period": ["day"]}, "period"),
    ({"aws": "no"}, "aws"),  # was read as true
    ({"aws": 0}, "aws"),
    ({"rpm": 2**63}, "rpm"),
    ({"tpm": -3}, "tpm"),
    ({"models": "m"}, "models"),
    ({"models": ["m", 7]}, "models[1]"),
    ({"models": [""]}, "models[0]"),
    ({"name": {"a": 1}}, "name"),
    ({"secret": "mm-chosen"}, "secret"),
])
def test_key_fields_are_checked(gw, customer, fields, param):
    refused(gw.admin.post("/keys", json={"customer": customer, **fields}), param)


@pytest.mark.parametrize("body, param, status", [
    ({}, "customer", 400),
    ({"customer": 12}, "customer", 400),
    ({"customer": "nobody"}, "customer", 404),
])
def test_key_customer_is_checked(gw, body, param, status):
    refused(gw.admin.post("/keys", json=body), param, status)


def test_a_valid_key_with_every_field(gw, customer):
    resp = gw.admin.post("/keys", json={
        "customer": customer, "models": ["m"], "rpm": 10, "tpm": None, "aws": False,
        "budget_usd": "999999.999999999999", "period": "total", "name": "all"})
    assert resp.status_code == 201, resp.text
    key = resp.json()
    assert key["budget_usd"] == "1000000.000000" and key["aws_access_key_id"] is None
    assert (key["models"], key["rpm"], key["budget_period"]) == (["m"], 10, "total")


@pytest.mark.parametrize("ident", ["99999999999999999999", str(2**63), "٣"])
def test_revoking_an_impossible_key_id_is_a_404(gw, ident):
    resp = gw.admin.delete(f"/keys/{ident}")
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("query, param", [
    ("/statements/keyed?month=0000-01", "month"),
    ("/statements/keyed?month=9999-12", "month"),
    ("/statements/keyed?month=2026-13", "month"),
    ("/statements/keyed?month=2026-1", "month"),
    ("/statements/keyed?month=", "month"),
    ("/statements/keyed?month=2026-11&format=xml", "format"),
    ("/margins?month=0000-01", "month"),
    ("/margins?month=１２３４-01", "month"),
    ("/usage?since=0001-01-01T00:00:00%2B01:00", "since"),
    ("/usage?until=2026-02-30", "until"),
    ("/usage?since=", "since"),
    ("/usage?by=", "by"),
    ("/usage?by=model,colour", "by"),
    ("/usage?customer=", "customer"),
    ("/keys?include_revoked=maybe", "include_revoked"),
    ("/keys?colour=red", "colour"),
    ("/customers?x=1", "x"),
])
def test_query_parameters_are_checked(gw, customer, query, param):
    refused(gw.admin.get(query), param)


def test_valid_queries_still_answer(gw, customer):
    assert gw.admin.get("/statements/keyed?month=1970-01").status_code == 200
    assert gw.admin.get("/margins?month=9998-12").status_code == 200
    resp = gw.admin.get("/usage?since=2026-01-01&until=2026-02-01&by=model,day,model")
    assert resp.status_code == 200 and resp.json() == []
    assert gw.admin.get("/keys?customer=keyed&include_revoked=true").status_code == 200


def test_the_openapi_document_states_the_bounds(gw):
    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    key = spec["paths"]["/admin/v1/keys"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert key["additionalProperties"] is False and key["required"] == ["customer"]
    assert key["properties"]["aws"]["type"] == ["boolean", "null"]
    assert key["properties"]["rpm"]["maximum"] == 2**63 - 1
    assert key["properties"]["budget_usd"]["type"] == ["string", "null"]
    month = spec["paths"]["/admin/v1/margins"]["get"]["parameters"][0]["schema"]["pattern"]
    assert month.startswith("^") and "1[0-2]" in month
