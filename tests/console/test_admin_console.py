"""The admin API's routes for the console: PATCH a key or a customer (servers enforce
the new limits at once), the overview and the ledger (totals equal to the rows and to the
statement), the catalog with prices and health, spend against budgets, the CLI's update
commands, and the OpenAPI document listing each route."""

from __future__ import annotations

import csv
import io
import time
from decimal import Decimal

import openai
import pytest

from tests.console.conftest import admin
from tests.fakes.script import Reply
from tests.marketplace.helpers import all_usage, cli, cli_json, month_of, poll


def _chat(secret: str, gw, model: str = "oa-list", text: str = "hi"):
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0)
    return client.chat.completions.create(model=model,
                                          messages=[{"role": "user", "content": text}])


def _new_key(gw, customer: str, **body) -> dict:
    if admin(gw, "GET", "/customers").json() and customer not in {
            c["name"] for c in admin(gw, "GET", "/customers").json()}:
        assert admin(gw, "POST", "/customers", json={"name": customer}).status_code == 201
    resp = admin(gw, "POST", "/keys", json={"customer": customer, **body})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_patch_a_key_and_the_new_rpm_is_enforced_at_once(gw, scripted):
    key = _new_key(gw, "patchco")
    for _ in range(3):
        _chat(key["secret"], gw)  # no limit yet
    resp = admin(gw, "PATCH", f"/keys/{key['id']}", json={"rpm": 2, "models": ["oa-list"],
                                                          "budget_usd": "1.50"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["rpm"], resp.json()["models"], resp.json()["budget_usd"],
            resp.json()["budget_period"]) == (2, ["oa-list"], "1.500000", "month")
    _chat(key["secret"], gw)
    _chat(key["secret"], gw)
    with pytest.raises(openai.RateLimitError):
        _chat(key["secret"], gw)
    with pytest.raises(openai.PermissionDeniedError):
        _chat(key["secret"], gw, model="oa-markup")
    resp = admin(gw, "PATCH", f"/keys/{key['prefix']}", json={"rpm": None, "models": None})
    assert resp.status_code == 200 and resp.json()["rpm"] is None
    _chat(key["secret"], gw, model="oa-markup")  # limit and model list gone
    # Bad input is a 400 naming the field; unknown keys a 404.
    for body, param in (({"rpm": 0}, "rpm"), ({"models": []}, "models"),
                        ({"colour": "red"}, "colour"), ({"budget_usd": "lots"}, "budget_usd")):
        resp = admin(gw, "PATCH", f"/keys/{key['id']}", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param, resp.text
    assert admin(gw, "PATCH", "/keys/999999", json={"rpm": 1}).status_code == 404
    assert admin(gw, "DELETE", f"/keys/{key['id']}").status_code == 200
    assert admin(gw, "PATCH", f"/keys/{key['id']}", json={"rpm": 1}).status_code == 400


def test_patch_a_customer(gw, scripted):
    key = _new_key(gw, "custlimits")
    resp = admin(gw, "PATCH", "/customers/custlimits", json={"rpm": 1})
    assert resp.status_code == 200 and resp.json()["rpm"] == 1
    _chat(key["secret"], gw)
    with pytest.raises(openai.RateLimitError):
        _chat(key["secret"], gw)
    assert admin(gw, "PATCH", "/customers/custlimits", json={"rpm": None}).json()["rpm"] is None
    _chat(key["secret"], gw)
    assert admin(gw, "PATCH", "/customers/nobody", json={"rpm": 1}).status_code == 404
    assert admin(gw, "PATCH", "/customers/custlimits", json={"name": "x"}).status_code == 400


def test_overview_and_ledger_totals_equal_the_rows_and_the_statement(gw, scripted):
    fake_openai, _ = scripted
    key = _new_key(gw, "ledgerco")
    for i in range(5):
        fake_openai.queue(Reply(text="x", input_tokens=100 + i, output_tokens=10 + i))
        _chat(key["secret"], gw)

    def rows():
        mine = [r for r in all_usage(gw.database_url) if r.key_id == key["id"]]
        return mine if len(mine) == 5 else None
    mine = poll(rows, 3.0, 0.05, "five ledger rows")
    everything = all_usage(gw.database_url)
    overview = admin(gw, "GET", "/overview").json()
    today = overview["windows"]["today"]
    assert today["requests"] == len(everything)
    assert today["price_pico"] == sum(r.price_pico for r in everything)
    assert today["cost_pico"] == sum(r.cost_pico for r in everything)
    assert overview["windows"]["range"]["price_pico"] == today["price_pico"]
    assert sum(p["requests"] for p in overview["series"]["points"]) == len(everything)
    assert "ledgerco" in {c["customer"] for c in overview["top_customers"]}

    page = admin(gw, "GET", "/ledger?customer=ledgerco&limit=2").json()
    assert page["totals"]["requests"] == 5
    assert page["totals"]["price_pico"] == sum(r.price_pico for r in mine)
    seen = [r["request_id"] for r in page["rows"]]
    while page["next"]:
        page = admin(gw, "GET", f"/ledger?customer=ledgerco&limit=2&before={page['next']}").json()
        seen += [r["request_id"] for r in page["rows"]]
    assert sorted(seen) == sorted(r.request_id for r in mine)
    statement = admin(gw, "GET", f"/statements/ledgerco?month={month_of(time.time())}").json()
    assert statement["total"]["price_usd"] == format(
        Decimal(sum(r.price_pico for r in mine)) / 10**12, ".12f")
    exported = admin(gw, "GET", "/ledger?customer=ledgerco&format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(table) == 5
    assert sum(Decimal(r["price_usd"]) for r in table) == Decimal(statement["total"]["price_usd"])
    assert admin(gw, "GET", "/ledger?customer=nobody").status_code == 404
    assert admin(gw, "GET", "/ledger?since=yesterday").status_code == 400


def test_catalog_health_and_spend(gw, scripted):
    models = {m["id"]: m for m in admin(gw, "GET", "/catalog").json()}
    oa = models["oa-list"]
    assert oa["price"]["kind"] == "list"
    assert oa["price"]["versions"][0]["input"] == "2"
    dep = oa["deployments"][0]
    assert dep["cost"][0]["output"] == "4" and dep["capabilities"]["tools"] is True
    assert dep["health"]["state"] == "healthy"
    assert models["oa-markup"]["price"] == {"kind": "markup", "markup": "0.1"}
    assert dep["name"] in admin(gw, "GET", "/health").json()
    key = _new_key(gw, "spendco", budget_usd="2", period="day")
    _chat(key["secret"], gw)
    poll(lambda: [r for r in all_usage(gw.database_url) if r.key_id == key["id"]], 3.0)
    [customer] = [c for c in admin(gw, "GET", "/spend").json() if c["name"] == "spendco"]
    [view] = customer["keys"]
    assert Decimal(view["budget_spent_usd"]) > 0 and view["budget_spent_usd"] == \
        customer["month_usd"] and 0 < view["budget_used"] < 1


def test_cli_update_commands(gw):
    db = gw.database_url
    cli("customers", "create", "cliupd", "--database", db)
    key = cli_json("keys", "create", "--customer", "cliupd", "--database", db)
    view = cli_json("keys", "update", str(key["id"]), "--rpm", "7", "--models", "oa-list",
                    "--budget", "3", "--period", "day", "--database", db)
    assert (view["rpm"], view["models"], view["budget_usd"], view["budget_period"]) == \
        (7, ["oa-list"], "3.000000", "day")
    view = cli_json("keys", "update", key["prefix"], "--rpm", "none", "--models", "all",
                    "--budget", "none", "--database", db)
    assert (view["rpm"], view["models"], view["budget_usd"]) == (None, None, None)
    bad = cli("keys", "update", str(key["id"]), "--models", " , ", "--database", db,
              check=False)
    assert bad.returncode == 2 and "models" in bad.stderr
    out = cli_json("customers", "update", "cliupd", "--tpm", "900", "--database", db)
    assert out["tpm"] == 900
    # A running server follows within a second (the key cache polls the change counter).
    cli("keys", "update", str(key["id"]), "--rpm", "1", "--database", db)
    poll(lambda: getattr(gw.app.keys.by_id(key["id"]), "rpm", None) == 1, 1.0, 0.05,
         "the server's key cache to hold rpm 1")


def test_openapi_lists_the_console_routes(gw):
    import httpx
    from openapi_spec_validator import validate

    spec = httpx.get(f"{gw.url}/admin/openapi.json").json()
    validate(spec)
    for path, method in (("/admin/v1/overview", "get"), ("/admin/v1/ledger", "get"),
                         ("/admin/v1/catalog", "get"), ("/admin/v1/health", "get"),
                         ("/admin/v1/spend", "get"), ("/admin/v1/keys/{key}", "patch"),
                         ("/admin/v1/keys/{key}", "delete"),
                         ("/admin/v1/customers/{customer}", "patch")):
        assert method in spec["paths"][path], (path, method)
