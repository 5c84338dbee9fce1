"""The console in a real browser: Debian's Chromium, headless, driven by Playwright.

One walk through the operator's day (sign in; create a customer and a key; requests with
that key through the OpenAI SDK show up in usage and in the overview, equal to the ledger;
the playground streams two models side by side; a new rpm is enforced; a revoked key is
refused; sign out), then a customer's (only its own data; 403/404 on another's by URL and
by API; its own keys), then a form posted from another origin, refused. Each page is
saved as a screenshot under the test's tmp folder (``console-screenshots``)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import openai
import pytest

from tests.console.conftest import admin
from tests.fakes.script import Reply, free_port
from tests.marketplace.helpers import all_usage, poll

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-screenshots")

    def shot(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    shot.folder = folder
    return shot


def _sign_in(page, gw, secret: str) -> None:
    page.goto(f"{gw.url}/console/login")
    page.fill("input[name=key]", secret)
    page.click("form[action='/console/login'] button[type=submit]")
    page.wait_for_load_state()


def _pico(page, selector: str) -> int:
    return int(page.locator(selector).get_attribute("data-pico"))


def _chat(gw, secret: str, model: str = "oa-list", text: str = "hello") -> str:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}])
    return raw.headers["x-request-id"]


def test_the_operator_s_day(gw, browser, shots, scripted):
    fake_openai, _ = scripted
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.url)
    page = context.new_page()
    page.goto(f"{gw.url}/console/overview")
    assert "/console/login" in page.url  # nothing without a session
    shots(page, "login")
    _sign_in(page, gw, gw.admin_key)
    assert page.url.endswith("/console/overview")

    # a customer and a key, the secret shown once with a copy button
    page.goto(f"{gw.url}/console/customers")
    page.fill("#new-customer input[name=name]", "browserco")
    page.click("#new-customer button[type=submit]")
    assert page.url.endswith("/console/customers/browserco")
    page.fill("#new-key input[name=name]", "from the browser")
    page.click("#new-key button[type=submit]")
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("mm-")
    page.click("button.copy")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shots(page, "key-created")
    key_id = [k for k in admin(gw, "GET", "/keys?customer=browserco").json()][0]["id"]

    # requests through the OpenAI SDK, seen in usage and in the overview, equal to the ledger
    rids = []
    for i in range(3):
        fake_openai.queue(Reply(text=f"answer {i}", input_tokens=100 + i, output_tokens=20))
        rids.append(_chat(gw, secret))
    mine = poll(lambda: [r for r in all_usage(gw.database_url) if r.key_id == key_id]
                if len([r for r in all_usage(gw.database_url) if r.key_id == key_id]) == 3
                else None, 3.0, 0.05, "three ledger rows")
    page.goto(f"{gw.url}/console/usage?customer=browserco")
    for rid in rids:
        assert page.locator(f"code.rid:text-is('{rid}')").count() == 1
    assert _pico(page, "#usage-totals [data-field=price] .usd") == sum(r.price_pico for r in mine)
    assert _pico(page, "#usage-totals [data-field=cost] .usd") == sum(r.cost_pico for r in mine)
    shots(page, "usage")
    everything = all_usage(gw.database_url)
    page.goto(f"{gw.url}/console/overview")
    assert _pico(page, "#window-today [data-field=price] .usd") == \
        sum(r.price_pico for r in everything)
    assert _pico(page, "#window-today [data-field=cost] .usd") == \
        sum(r.cost_pico for r in everything)
    assert page.locator("#window-today [data-field=requests]").inner_text() == \
        f"{len(everything):,}"
    shots(page, "overview")

    # the playground: two models side by side, streamed through the gateway with the key
    page.goto(f"{gw.url}/console/playground")
    page.fill("#pg-key", secret)
    page.select_option("#pg-model-a", "oa-list")
    page.select_option("#pg-model-b", "oa-markup")
    page.fill("#pg-prompt", "Say something streamed")
    fake_openai.queue(Reply(text="streamed from the left", chunk_size=4),
                      Reply(text="streamed from the right", chunk_size=4))
    page.click("#pg-send")
    for side in ("a", "b"):
        page.wait_for_selector(f"#pg-answer-{side}[data-done='1']", timeout=10_000)
        # (no wait_for_function: the console's CSP forbids evaluating strings, rightly)
        page.wait_for_selector(f"#pg-answer-{side} .pg-cost[data-pico]", timeout=10_000)
    texts = {page.locator(f"#pg-answer-{s} .pg-text").inner_text() for s in ("a", "b")}
    assert texts == {"streamed from the left", "streamed from the right"}
    for side in ("a", "b"):
        rid = page.locator(f"#pg-answer-{side}").get_attribute("data-request-id")
        row = next(r for r in all_usage(gw.database_url) if r.request_id == rid)
        assert row.stream and row.key_id == key_id
        assert _pico(page, f"#pg-answer-{side} .pg-cost") == row.price_pico
        assert page.locator(f"#pg-answer-{side} .pg-tokens").inner_text() == \
            f"{row.input_tokens} / {row.output_tokens}"
    shots(page, "playground")

    # a new rpm for the key, enforced at once
    page.goto(f"{gw.url}/console/customers/browserco")
    page.click(f"#key-{key_id} summary")
    page.fill(f"#key-{key_id} input[name=rpm]", "2")
    page.click(f"#key-{key_id} form.stack button[type=submit]")
    assert "saved=" in page.url
    assert page.locator(f"#key-{key_id} summary").inner_text().count("rpm 2") == 1
    _chat(gw, secret)
    _chat(gw, secret)
    with pytest.raises(openai.RateLimitError):
        _chat(gw, secret)
    shots(page, "customer")

    # revoked: refused
    page.click(f"#key-{key_id} form.revoke button")
    assert "revoked" in page.locator(f"#key-{key_id} summary").inner_text()
    with pytest.raises(openai.AuthenticationError):
        _chat(gw, secret)

    for name in ("catalog", "customers", "margins", "leaderboard"):
        page.goto(f"{gw.url}/console/{name}")
        if name == "catalog":
            page.wait_for_selector("#health-stamp:has-text('updated')")
            assert page.locator("tr[data-deployment] .state").first.inner_text() == "healthy"
        shots(page, name)

    page.click("form.signout button")
    assert "/console/login" in page.url
    page.goto(f"{gw.url}/console/overview")
    assert "/console/login" in page.url
    context.close()


def test_a_customer_sees_only_its_own(gw, browser, shots, scripted):
    admin(gw, "POST", "/customers", json={"name": "bro-a"})
    admin(gw, "POST", "/customers", json={"name": "bro-b"})
    key_a = admin(gw, "POST", "/keys", json={"customer": "bro-a", "rpm": 50,
                                             "budget_usd": "5", "period": "month"}).json()
    key_b = admin(gw, "POST", "/keys", json={"customer": "bro-b"}).json()
    rid_a, rid_b = _chat(gw, key_a["secret"]), _chat(gw, key_b["secret"])
    poll(lambda: {r.request_id for r in all_usage(gw.database_url)} >= {rid_a, rid_b}, 3.0)

    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    _sign_in(page, gw, key_a["secret"])
    assert page.url.endswith("/console/me")
    assert "bro-a" in page.locator("h1").inner_text()
    shots(page, "customer-me-phone")
    page.goto(f"{gw.url}/console/usage")
    assert page.locator(f"code.rid:text-is('{rid_a}')").count() == 1
    assert rid_b not in page.content()
    shots(page, "customer-usage-phone")
    for path, status in (("/console/customers/bro-b", 403), ("/console/overview", 403),
                         ("/console/usage?customer=bro-b", 404),
                         (f"/console/usage?key={key_b['id']}", 404)):
        assert page.goto(gw.url + path).status == status, path
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    api = page.request
    assert api.get(f"{gw.url}/console/api/ledger?customer=bro-b").status == 404
    assert api.get(f"{gw.url}/console/api/requests/{rid_b}").status == 404
    assert api.delete(f"{gw.url}/console/api/keys/{key_b['id']}",
                      headers={"x-csrf-token": token, "origin": gw.url}).status == 404
    assert api.patch(f"{gw.url}/console/api/keys/{key_b['id']}", data={"rpm": 1},
                     headers={"x-csrf-token": token, "origin": gw.url}).status == 403

    # its own keys: made within the operator's limits, and revoked
    page.goto(f"{gw.url}/console/me/keys")
    page.fill("#new-key input[name=rpm]", "500")  # above its key's 50: refused
    page.click("#new-key button[type=submit]")
    assert "at most 50" in page.locator("p.error").inner_text()
    page.fill("#new-key input[name=rpm]", "10")
    page.click("#new-key button[type=submit]")
    own = page.locator("#new-secret").inner_text().strip()
    _chat(gw, own)
    made = [k for k in admin(gw, "GET", "/keys?customer=bro-a").json() if k["rpm"] == 10][0]
    assert (made["budget_usd"], made["budget_period"]) == ("5.000000", "month")
    shots(page, "customer-keys-phone")
    page.goto(f"{gw.url}/console/me/keys")
    page.locator("#my-keys tr", has_text=made["prefix"]).locator("button").click()
    with pytest.raises(openai.AuthenticationError):
        _chat(gw, own)
    page.goto(f"{gw.url}/console/me/models")
    assert page.locator("#models tbody tr").count() == len(gw.app.catalog.models)
    shots(page, "customer-models-phone")
    page.click("form.signout button")
    assert "/console/login" in page.url
    context.close()


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin (another port of the same host: the same *site*, so SameSite=Strict
    cookies still go along) serving a form that posts to the console."""

    target = ""

    def do_GET(self):
        body = (f'<form id="f" method="post" action="{self.target}/console/customers">'
                '<input name="name" value="evil-co"><input name="_csrf" value="guess">'
                '</form><script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_form_from_another_origin_is_refused(gw, browser):
    _Attacker.target = gw.url
    attacker = http.server.HTTPServer(("127.0.0.1", free_port()), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, gw, gw.admin_key)
        with page.expect_navigation(url=f"{gw.url}/console/customers"):
            page.goto(f"http://127.0.0.1:{attacker.server_port}/")
        assert "another site" in page.content()
        assert "evil-co" not in {c["name"] for c in admin(gw, "GET", "/customers").json()}
        # the session itself is fine: the console still opens
        assert page.goto(f"{gw.url}/console/customers").status == 200
    finally:
        context.close()
        attacker.shutdown()
