"""Issue #3, the admin REST API: customers and keys over REST, usage, statements (JSON and
CSV) and margins with exact totals, revocation, the admin key's own auth, and the OpenAPI
document. A gateway with its own database, so every total is known."""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fakes.script import Reply
from tests.harness import GatewayServer
from tests.marketplace.helpers import M, day_of, ensure_admin_key, month_of, poll, priced_catalog


@pytest.fixture(scope="module")
def admin_gw(fake_openai, fake_anthropic):
    tmp = tempfile.TemporaryDirectory(prefix="mm-admin-")
    db = f"sqlite:///{Path(tmp.name) / 'admin.db'}"
    admin_key = ensure_admin_key(db)
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic), database_url=db).start()
    server.admin_key = admin_key
    yield server
    server.stop()
    tmp.cleanup()


def admin(gw, method, path, key="admin", **kw):
    headers = {} if key is None else {
        "authorization": f"Bearer {gw.admin_key if key == 'admin' else key}"}
    return httpx.request(method, f"{gw.url}/admin/v1{path}", headers=headers, timeout=10, **kw)


def test_admin_api_needs_the_admin_key(admin_gw):
    for key in (None, "mm-not-a-key"):
        resp = admin(admin_gw, "GET", "/customers", key=key)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["type"] == "authentication_error"
    resp = admin(admin_gw, "GET", "/customers", key=admin_gw.key)  # a customer's key
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "permission_error"
    resp = admin(admin_gw, "POST", "/customers", key=admin_gw.key, json={"name": "sneaky"})
    assert resp.status_code == 403
    names = [c["name"] for c in admin(admin_gw, "GET", "/customers").json()]
    assert "sneaky" not in names and "acme" in names


def test_openapi_document_is_valid_openapi_3_1(admin_gw):
    from openapi_spec_validator import validate

    spec = httpx.get(f"{admin_gw.url}/admin/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    validate(spec)
    for path in ("/admin/v1/customers", "/admin/v1/keys", "/admin/v1/keys/{key}",
                 "/admin/v1/usage", "/admin/v1/statements/{customer}", "/admin/v1/margins"):
        assert path in spec["paths"], path


def test_customer_and_keys_over_rest_usage_statement_margins_revoke(admin_gw, scripted):
    fake_openai, fake_anthropic = scripted
    resp = admin(admin_gw, "POST", "/customers", json={"name": "globex", "rpm": 100})
    assert resp.status_code == 201, resp.text
    customer = resp.json()
    assert (customer["name"], customer["rpm"]) == ("globex", 100)
    assert admin(admin_gw, "POST", "/customers", json={"name": "globex"}).status_code == 409

    resp = admin(admin_gw, "POST", "/keys", json={"customer": "globex", "name": "primary"})
    assert resp.status_code == 201, resp.text
    k1 = resp.json()
    made = time.monotonic()
    resp = admin(admin_gw, "POST", "/keys", json={"customer": "globex", "models": ["an-markup"],
                                                  "budget_usd": "5.00", "period": "day"})
    assert resp.status_code == 201
    k2 = resp.json()
    assert (k2["models"], k2["budget_usd"], k2["budget_period"]) == (["an-markup"], "5.000000", "day")
    assert k1["secret"].startswith("mm-") and "secret_hash" not in k1

    oa1 = openai.OpenAI(base_url=f"{admin_gw.url}/v1", api_key=k1["secret"], max_retries=0)
    fake_openai.queue(Reply(text="a", input_tokens=100, output_tokens=10))
    # The admin API reloads the key cache before it answers: the key works right away.
    oa1.chat.completions.create(model="oa-list", messages=[{"role": "user", "content": "a"}])
    assert time.monotonic() - made < 1.0
    fake_openai.queue(Reply(text="b", input_tokens=200, cache_read_tokens=50, output_tokens=20))
    oa1.chat.completions.create(model="oa-list", messages=[{"role": "user", "content": "b"}])
    fake_anthropic.queue(Reply(text="c", input_tokens=10, output_tokens=4))
    an2 = anthropic.Anthropic(base_url=admin_gw.url, api_key=k2["secret"], max_retries=0)
    an2.messages.create(model="an-markup", max_tokens=10, messages=[{"role": "user", "content": "c"}])
    now = time.time()
    month, day = month_of(now), day_of(now)

    # By hand (oa-list: cost 1.00/0.25/4.00, list price 2.00/0.50/8.00; an-markup: cost
    # 3.00 in, 15.00 out, price cost × 1.25):
    oa_price = (100 * 2 * M + 10 * 8 * M) + (200 * 2 * M + 50 * M // 2 + 20 * 8 * M)
    oa_cost = (100 * M + 10 * 4 * M) + (200 * M + 50 * M // 4 + 20 * 4 * M)
    an_cost = 10 * 3 * M + 4 * 15 * M
    an_price = an_cost * 5 // 4
    assert (oa_price, oa_cost, an_price, an_cost) == (865_000_000, 432_500_000,
                                                       112_500_000, 90_000_000)

    def usage_rows():
        rows = admin(admin_gw, "GET", "/usage?customer=globex&by=model").json()
        return rows if sum(r["requests"] for r in rows) == 3 else None
    by_model = {r["model"]: r for r in poll(usage_rows, 2.0, 0.05, "three usage rows")}
    assert by_model["oa-list"] == {
        "model": "oa-list", "requests": 2, "input_tokens": 300, "output_tokens": 30,
        "cache_read_tokens": 50, "cache_write_tokens": 0, "reasoning_tokens": 0,
        "cost_pico": oa_cost, "price_pico": oa_price, "margin_pico": oa_price - oa_cost,
        "cost_usd": "0.000432500000", "price_usd": "0.000865000000",
        "margin_usd": "0.000432500000"}
    assert (by_model["an-markup"]["requests"], by_model["an-markup"]["price_pico"],
            by_model["an-markup"]["cost_pico"]) == (1, an_price, an_cost)

    rows = admin(admin_gw, "GET", "/usage?customer=globex&by=model,day,key").json()
    assert {(r["model"], r["day"], r["key"], r["requests"], r["price_pico"]) for r in rows} == {
        ("oa-list", day, k1["id"], 2, oa_price), ("an-markup", day, k2["id"], 1, an_price)}
    bad = admin(admin_gw, "GET", "/usage?by=colour")
    assert bad.status_code == 400 and "colour" in bad.json()["error"]["message"]

    st = admin(admin_gw, "GET", f"/statements/globex?month={month}").json()
    assert st["customer"] == "globex" and st["month"] == month
    assert {(l["model"], l["requests"], l["price_pico"]) for l in st["lines"]} == {
        ("oa-list", 2, oa_price), ("an-markup", 1, an_price)}
    assert st["total"]["price_pico"] == oa_price + an_price == 977_500_000
    assert st["total"]["price_usd"] == "0.000977500000" and st["total"]["requests"] == 3

    resp = admin(admin_gw, "GET", f"/statements/globex?month={month}&format=csv")
    assert resp.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["model"] for r in table][-1] == "TOTAL"
    lines = {r["model"]: r for r in table}
    assert lines["oa-list"]["price_usd"] == "0.000865000000"
    assert lines["oa-list"]["cache_read_tokens"] == "50"
    assert lines["an-markup"]["price_usd"] == "0.000112500000"
    assert (lines["TOTAL"]["requests"], lines["TOTAL"]["price_usd"]) == ("3", "0.000977500000")
    assert admin(admin_gw, "GET", "/statements/globex").status_code == 400  # month required
    assert admin(admin_gw, "GET", f"/statements/nobody?month={month}").status_code == 404

    margins = admin(admin_gw, "GET", f"/margins?month={month}").json()
    prov = {r["provider"]: r for r in margins["by_provider"]}
    assert (prov["openai"]["revenue_pico"], prov["openai"]["cost_pico"],
            prov["openai"]["margin_pico"], prov["openai"]["margin_pct"]) == (
        oa_price, oa_cost, oa_price - oa_cost, "50.00")
    assert (prov["anthropic"]["revenue_pico"], prov["anthropic"]["cost_pico"],
            prov["anthropic"]["margin_pct"]) == (an_price, an_cost, "20.00")
    models = {r["model"]: r for r in margins["by_model"]}
    assert models["oa-list"]["margin_usd"] == "0.000432500000"
    assert models["an-markup"]["margin_usd"] == "0.000022500000"
    total = margins["total"]
    assert (total["revenue_pico"], total["cost_pico"], total["margin_pico"]) == (
        977_500_000, 522_500_000, 455_000_000)
    assert total["margin_pct"] == "46.55"  # 455 / 977.5 = 46.547 %

    # Revoke over REST: refused at once.
    resp = admin(admin_gw, "DELETE", f"/keys/{k1['id']}")
    assert resp.status_code == 200 and resp.json()["revoked"] is True
    poll(lambda: httpx.post(f"{admin_gw.url}/v1/chat/completions", timeout=10,
                            headers={"authorization": f"Bearer {k1['secret']}"},
                            json={"model": "oa-list", "messages": [{"role": "user", "content": "x"}]}
                            ).status_code == 401, 1.0, 0.05, "the revoked key to be refused")
    listed = admin(admin_gw, "GET", "/keys?customer=globex").json()
    assert [k["id"] for k in listed] == [k2["id"]]
    listed = admin(admin_gw, "GET", "/keys?customer=globex&include_revoked=true").json()
    assert sorted(k["id"] for k in listed) == sorted([k1["id"], k2["id"]])
    assert all("secret" not in k for k in listed)
    assert admin(admin_gw, "DELETE", "/keys/999999").status_code == 404
