"""The console's sign-in over raw HTTP: nothing without a session, the cookie's flags,
sessions shared through the database (two servers), idle and absolute expiry, a revoked
key ending its sessions, the sign-in rate limit, CSRF (token and origin), and a customer
seeing only its own rows, by page and by API."""

from __future__ import annotations

import re
import time

import httpx
import openai

from tests.console.conftest import admin
from tests.harness import GatewayServer
from tests.marketplace.helpers import all_usage, poll, priced_catalog


def sign_in(gw, secret: str) -> httpx.Client:
    client = httpx.Client(base_url=gw.url, follow_redirects=False, timeout=10)
    resp = client.post("/console/login", data={"key": secret}, headers={"origin": gw.url})
    assert resp.status_code == 303, resp.text
    return client


def csrf_of(client: httpx.Client, page: str = "/console/") -> str:
    html = client.get(page, follow_redirects=True).text
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', html).group(1)


def _example(pattern: str) -> str:
    path = re.sub(r"\(\?P<id>[^)]*\)", "1", pattern)
    path = re.sub(r"\(\?P<rid>[^)]*\)", "abc", path)
    return "/console" + re.sub(r"\(\?P<name>[^)]*\)", "acme", path)


def test_nothing_without_a_session(gw):
    client = httpx.Client(base_url=gw.url, follow_redirects=False, timeout=10)
    routes = gw.app.console.routes
    assert len(routes) > 20
    for method, pattern, who, _ in routes:
        if who == "anyone":
            continue
        path = _example(pattern.pattern.rstrip("$"))
        resp = client.request(method, path, headers={"origin": gw.url})
        if method == "GET" and not path.startswith("/console/api/"):
            assert resp.status_code == 303, (method, path)
            assert resp.headers["location"].startswith("/console/login")
        else:
            assert resp.status_code == 401, (method, path, resp.status_code)
    assert client.get("/console/login").status_code == 200  # and static files
    assert client.get("/console/static/console.css").status_code == 200
    assert client.get("/console/static/../api/app.py").status_code == 404


def test_cookie_flags_and_secure_behind_tls(gw):
    resp = httpx.post(f"{gw.url}/console/login", data={"key": gw.admin_key},
                      headers={"origin": gw.url})
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie
    host = gw.url.split("//")[1]
    resp = httpx.post(f"{gw.url}/console/login", data={"key": gw.admin_key},
                      headers={"origin": f"https://{host}", "x-forwarded-proto": "https"})
    assert resp.status_code == 303 and "; Secure" in resp.headers["set-cookie"]
    token = resp.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    # the database holds a hash of the cookie's value, never the value
    from tests.pg import run_async
    from modelmart.store.base import open_store

    async def ids():
        store = await open_store(gw.database_url)
        try:
            return [r[0] for r in await store._all("SELECT id_hash FROM console_sessions")]
        finally:
            await store.close()
    stored = run_async(ids())
    assert token not in stored and len(stored) >= 2


def test_a_session_works_on_another_server_of_the_same_database(gw, fake_openai,
                                                                fake_anthropic):
    other = GatewayServer(priced_catalog(fake_openai, fake_anthropic),
                          database_url=gw.database_url).start()
    try:
        client = sign_in(gw, gw.admin_key)
        cookie = client.cookies.get("mm_console")
        resp = httpx.get(f"{other.url}/console/overview", cookies={"mm_console": cookie})
        assert resp.status_code == 200 and "Overview" in resp.text
        client.post("/console/logout", data={"_csrf": csrf_of(client)},
                    headers={"origin": gw.url})
        resp = httpx.get(f"{other.url}/console/overview", cookies={"mm_console": cookie})
        assert resp.status_code == 303  # signed out everywhere
    finally:
        other.stop()


def test_idle_and_absolute_expiry_and_revoked_keys(gw):
    sessions = gw.app.console.sessions
    client = sign_in(gw, gw.admin_key)
    assert client.get("/console/overview").status_code == 200
    idle, lifetime = sessions.idle, sessions.lifetime
    try:
        sessions.idle = 0.5
        time.sleep(0.7)
        assert client.get("/console/overview").status_code == 303
        sessions.idle = idle
        sessions.lifetime = 2.0
        client = sign_in(gw, gw.admin_key)
        signed_in = time.monotonic()
        for _ in range(3):
            time.sleep(0.3)
            assert client.get("/console/overview").status_code == 200
        time.sleep(max(0.0, 2.2 - (time.monotonic() - signed_in)))
        assert client.get("/console/overview").status_code == 303  # activity does not extend it
    finally:
        sessions.idle, sessions.lifetime = idle, lifetime
    key = admin(gw, "POST", "/keys", json={"customer": "acme"}).json()
    client = sign_in(gw, key["secret"])
    assert client.get("/console/me").status_code == 200
    admin(gw, "DELETE", f"/keys/{key['id']}")
    assert client.get("/console/me").status_code == 303


def test_sign_in_attempts_are_limited_per_address(gw):
    sessions = gw.app.console.sessions
    before = sessions.attempts_per_minute
    sessions.attempts_per_minute = 3
    # from addresses of their own (the loopback range), so other tests' sign-ins don't count
    first, second = (httpx.Client(transport=httpx.HTTPTransport(local_address=a), timeout=10)
                     for a in ("127.0.0.2", "127.0.0.3"))
    try:
        if time.time() % 60 > 57:  # all within one minute
            time.sleep(60 - time.time() % 60 + 0.05)
        codes = [first.post(f"{gw.url}/console/login", data={"key": "mm-wrong"},
                            headers={"origin": gw.url}).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        # the right key is refused too while the address is over its limit ...
        resp = first.post(f"{gw.url}/console/login", data={"key": gw.admin_key},
                          headers={"origin": gw.url})
        assert resp.status_code == 429 and "set-cookie" not in resp.headers
        # ... and another address is not
        resp = second.post(f"{gw.url}/console/login", data={"key": gw.admin_key},
                           headers={"origin": gw.url})
        assert resp.status_code == 303 and "mm_console=" in resp.headers["set-cookie"]
    finally:
        sessions.attempts_per_minute = before


def test_csrf_token_and_origin(gw):
    client = sign_in(gw, gw.admin_key)
    token = csrf_of(client)
    cases = [({"name": "csrf-a"}, {"origin": gw.url}),  # no token
             ({"name": "csrf-b", "_csrf": token}, {"origin": "http://evil.example"}),
             ({"name": "csrf-c", "_csrf": token}, {}),  # neither Origin nor Referer
             ({"name": "csrf-d", "_csrf": "0" * 64}, {"origin": gw.url})]
    for data, headers in cases:
        resp = client.post("/console/customers", data=data, headers=headers)
        assert resp.status_code == 403, (data, headers)
    resp = client.post("/console/customers", data={"name": "csrf-ok", "_csrf": token},
                       headers={"referer": f"{gw.url}/console/customers"})
    assert resp.status_code == 303
    names = {c["name"] for c in admin(gw, "GET", "/customers").json()}
    assert "csrf-ok" in names and not names & {"csrf-a", "csrf-b", "csrf-c", "csrf-d"}
    # sign-in from another site's form is refused too (login CSRF)
    resp = httpx.post(f"{gw.url}/console/login", data={"key": gw.admin_key},
                      headers={"origin": "http://evil.example"})
    assert resp.status_code == 403 and "set-cookie" not in resp.headers


def test_a_customer_sees_only_its_own(gw, scripted):
    mine = admin(gw, "POST", "/customers", json={"name": "own-a"}).json()
    admin(gw, "POST", "/customers", json={"name": "own-b"})
    key_a = admin(gw, "POST", "/keys", json={"customer": "own-a"}).json()
    key_b = admin(gw, "POST", "/keys", json={"customer": "own-b"}).json()
    rids = {}
    for name, key in (("a", key_a), ("b", key_b)):
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["secret"], max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="oa-list", messages=[{"role": "user", "content": name}])
        rids[name] = raw.headers["x-request-id"]
    poll(lambda: {r.request_id for r in all_usage(gw.database_url)} >= set(rids.values()), 3)
    client = sign_in(gw, key_a["secret"])
    token = csrf_of(client, "/console/me")
    usage = client.get("/console/usage").text
    assert rids["a"] in usage and rids["b"] not in usage
    assert rids["b"] not in client.get("/console/usage.csv").text
    ledger = client.get("/console/api/ledger").json()
    assert {r["request_id"] for r in ledger["rows"]} == {rids["a"]}
    assert "cost_pico" not in ledger["rows"][0] and "cost_pico" not in ledger["totals"]
    assert client.get("/console/api/requests/" + rids["a"]).status_code == 200
    for method, path in (("GET", "/console/customers/own-b"), ("GET", "/console/overview"),
                         ("GET", "/console/catalog"), ("GET", "/console/api/health"),
                         ("PATCH", f"/console/api/keys/{key_b['id']}")):
        resp = client.request(method, path, headers={"origin": gw.url, "x-csrf-token": token},
                              json={"rpm": 1} if method == "PATCH" else None)
        assert resp.status_code == 403, (method, path)
    for method, path in (("GET", "/console/usage?customer=own-b"),
                         ("GET", f"/console/usage?key={key_b['id']}"),
                         ("GET", "/console/api/ledger?customer=own-b"),
                         ("GET", "/console/api/requests/" + rids["b"]),
                         ("DELETE", f"/console/api/keys/{key_b['id']}")):
        resp = client.request(method, path, headers={"origin": gw.url, "x-csrf-token": token})
        assert resp.status_code == 404, (method, path, resp.status_code)
    resp = client.post(f"/console/me/keys/{key_b['id']}/revoke", data={"_csrf": token},
                       headers={"origin": gw.url})
    assert resp.status_code == 404
    spend = client.get("/console/api/spend").json()
    assert [c["id"] for c in spend] == [mine["id"]]
    assert admin(gw, "GET", "/keys?customer=own-b").json()[0]["revoked_at"] is None
