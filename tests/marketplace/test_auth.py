"""Issue #3, authentication and model access: each dialect's own 401/403 bodies, the admin
key kept off the models, and keys created or revoked by the CLI (another process) taking
effect on the running gateway."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from tests.marketplace.helpers import cli, cli_key, fresh_key, poll

MSG = [{"role": "user", "content": "hello"}]


def oa(gateway, key):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def an(gateway, key):
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def raw_openai(gateway, headers):
    return httpx.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                      json={"model": "oa-list", "messages": MSG}, headers=headers)


def raw_anthropic(gateway, headers):
    return httpx.post(f"{gateway.url}/v1/messages", timeout=10,
                      json={"model": "an-list", "max_tokens": 5, "messages": MSG},
                      headers={"anthropic-version": "2023-06-01", **headers})


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer mm-not-a-real-key"},
                                     {"x-api-key": "mm-not-a-real-key"}],
                         ids=["missing", "unknown-bearer", "unknown-x-api-key"])
def test_missing_or_unknown_key_is_401_in_each_dialect(priced, scripted, headers):
    resp = raw_openai(priced, headers)
    assert resp.status_code == 401, resp.text
    err = resp.json()["error"]
    assert err["type"] == "authentication_error" and err["message"]
    assert resp.headers.get("x-request-id")

    resp = raw_anthropic(priced, headers)
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]
    assert not any(f.received for f in scripted), "an unauthenticated call reached an upstream"


def test_missing_and_unknown_key_through_the_sdks(priced, scripted):
    with pytest.raises(openai.AuthenticationError) as e:
        oa(priced, "mm-wrong").chat.completions.create(model="oa-list", messages=MSG)
    assert e.value.status_code == 401 and "Invalid API key" in e.value.message
    with pytest.raises(anthropic.AuthenticationError) as e:
        an(priced, "mm-wrong").messages.create(model="an-list", max_tokens=5, messages=MSG)
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_key_limited_to_one_model_gets_403_for_another(priced, scripted):
    key = fresh_key(priced, models=["oa-list"])
    ok = oa(priced, key).chat.completions.create(model="oa-list", messages=MSG)
    assert ok.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as e:
        oa(priced, key).chat.completions.create(model="an-list", messages=MSG)
    assert e.value.status_code == 403
    assert e.value.body["type"] == "permission_error" and "an-list" in e.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        an(priced, key).messages.create(model="an-list", max_tokens=5, messages=MSG)
    assert e.value.status_code == 403
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "permission_error"
    assert "an-list" in e.value.body["error"]["message"]
    assert len(scripted[1].received) == 0, "a forbidden call reached the Anthropic upstream"


def test_cli_models_flag_limits_the_key(priced, scripted):
    view = cli_key(priced.database_url, "acme", "--models", "an-list")
    assert view["models"] == ["an-list"]
    secret = view["secret"]
    poll(lambda: raw_anthropic(priced, {"x-api-key": secret}).status_code == 200, 2.0, 0.05,
         "the CLI key to work")
    with pytest.raises(openai.PermissionDeniedError):
        oa(priced, secret).chat.completions.create(model="oa-list", messages=MSG)


def test_admin_key_cannot_call_models(priced, scripted):
    from tests.marketplace.helpers import ensure_admin_key

    admin = ensure_admin_key(priced.database_url)
    assert admin, "the harness database already had an admin key"
    # The cache reloads on the change counter; wait until the key is known (admin API works).
    poll(lambda: httpx.get(f"{priced.url}/admin/v1/customers",
                           headers={"authorization": f"Bearer {admin}"}).status_code == 200,
         2.0, 0.05, "the admin key to be loaded")
    with pytest.raises(openai.PermissionDeniedError) as e:
        oa(priced, admin).chat.completions.create(model="oa-list", messages=MSG)
    assert e.value.status_code == 403 and "admin" in e.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        an(priced, admin).messages.create(model="an-list", max_tokens=5, messages=MSG)
    assert e.value.body["error"]["type"] == "permission_error"
    assert not any(f.received for f in scripted)


def test_key_created_and_revoked_by_the_cli_take_effect_on_the_running_server(priced, scripted):
    db = priced.database_url
    view = cli_key(db, "acme", "--name", "cli-made")
    secret = view["secret"]
    created = time.monotonic()

    def status():
        return raw_openai(priced, {"authorization": f"Bearer {secret}"}).status_code

    poll(lambda: status() == 200, 2.0, 0.05, "the new CLI key to be accepted")
    assert time.monotonic() - created < 1.5

    out = cli("keys", "revoke", str(view["id"]), "--database", db)
    assert "revoked" in out.stdout
    revoked = time.monotonic()
    poll(lambda: status() == 401, 2.0, 0.05, "the revoked key to be refused")
    assert time.monotonic() - revoked < 1.5
    # And it stays refused, in the Anthropic dialect too.
    resp = raw_anthropic(priced, {"x-api-key": secret})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"

    # Revoking twice is an error the CLI reports, not a crash.
    again = cli("keys", "revoke", str(view["id"]), "--database", db, check=False)
    assert again.returncode == 2 and "already revoked" in again.stderr
