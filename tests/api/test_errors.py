"""Every error path answers in the caller's dialect with a 4xx/5xx that says what went wrong."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.fakes.script import Reply

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


def post(gateway, path, content, headers=None):
    return httpx.post(gateway.url + path, content=content, timeout=30,
                      headers={"content-type": "application/json",
                               "authorization": f"Bearer {gateway.key}", **(headers or {})})


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "gpt-fake"}', "messages"),
    (b'{"model": "gpt-fake", "messages": "hi"}', "messages"),
    (b'{"model": "gpt-fake", "messages": [{"role": "wizard", "content": "x"}]}', "messages"),
    (b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
     "temperature"),
    (b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "n": 3}', "n"),
])
def test_openai_bad_input_is_400_in_openai_shape(gateway, body, param):
    resp = post(gateway, OPENAI_PATH, body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if param:
        assert param in (err.get("param") or "") or param in err["message"]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "JSON"),
    (b'{"model": "claude-fake", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"model": "claude-fake", "max_tokens": 10, "messages": [{"role": "user", '
     b'"content": [{"type": "hologram"}]}]}', "hologram"),
    (b'{"model": "claude-fake", "max_tokens": "ten", "messages": []}', "max_tokens"),
])
def test_anthropic_bad_input_is_400_in_anthropic_shape(gateway, body, fragment):
    resp = post(gateway, ANTHROPIC_PATH, body)
    assert resp.status_code == 400, resp.text
    data = resp.json()
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert fragment in data["error"]["message"]


def test_unknown_model_is_404_in_each_dialect(gateway):
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        oa.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "gpt-9" in str(e.value)
    an = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as e:
        an.messages.create(model="claude-9", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "claude-9" in str(e.value)


def test_oversized_body_is_413(gateway):
    big = b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "' + b"a" * 2_000_000 + b'"}]}'
    resp = post(gateway, OPENAI_PATH, big)
    assert resp.status_code == 413
    assert "limit" in resp.json()["error"]["message"]
    resp = post(gateway, ANTHROPIC_PATH, big)
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"


def test_unknown_route_is_404_json(gateway):
    resp = httpx.get(gateway.url + "/v1/nothing-here")
    assert resp.status_code == 404 and "error" in resp.json()


@pytest.mark.parametrize("status, openai_exc, anthropic_exc", [
    (400, openai.BadRequestError, anthropic.BadRequestError),
    (404, openai.NotFoundError, anthropic.NotFoundError),
    (413, openai.APIStatusError, anthropic.APIStatusError),
    (429, openai.RateLimitError, anthropic.RateLimitError),
    (500, openai.InternalServerError, anthropic.InternalServerError),
    (529, openai.InternalServerError, anthropic.APIStatusError),
])
@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_upstream_errors_keep_their_status(gateway, fakes, status, openai_exc, anthropic_exc, model):
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    an = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    for fake in fakes:
        fake.queue(Reply(error_status=status, error_message="upstream said no", retry_after=7),
                   Reply(error_status=status, error_message="upstream said no", retry_after=7))
    with pytest.raises(openai_exc) as e:
        oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == status and "upstream said no" in str(e.value)
    if status == 429:
        assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic_exc) as e:
        an.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == status


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_upstream_rejecting_the_gateways_key_is_a_502(gateway, fakes, status, model):
    """The client's own key is fine: telling it 401 would send it looking in the wrong place."""
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    an = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    for fake in fakes:
        fake.queue(Reply(error_status=status, error_message="bad key sk-...abcd"),
                   Reply(error_status=status, error_message="bad key sk-...abcd"))
    with pytest.raises(openai.InternalServerError) as e:
        oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502 and "rejected the gateway's credentials" in str(e.value)
    assert "sk-" not in str(e.value)
    with pytest.raises(anthropic.APIStatusError) as e:
        an.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_upstream_failure_mid_stream_is_an_error_event(gateway, fakes, model):
    for fake in fakes:
        fake.queue(Reply(text="this stream will be cut short", chunk_size=2, truncate_after=4))
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in oa.chat.completions.create(model=model, stream=True,
                                            messages=[{"role": "user", "content": "x"}]):
            pass
    for fake in fakes:
        fake.queue(Reply(text="this stream will be cut short", chunk_size=2, truncate_after=4))
    an = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    with pytest.raises(anthropic.APIError):
        with an.messages.stream(model=model, max_tokens=50,
                                messages=[{"role": "user", "content": "x"}]) as stream:
            for _ in stream:
                pass


def test_unreachable_upstream_is_502(tmp_path):
    from tests.fakes.script import free_port
    from tests.harness import GatewayServer

    port = free_port()
    server = GatewayServer({"bundled_model": False, "models": {"dead": {
        "provider": "openai-compatible", "base_url": f"http://127.0.0.1:{port}/v1",
        "price": {"input": 1, "output": 2, "caching": False},
        "cost": {"input": 1, "output": 2, "caching": False}}}}).start()
    try:
        oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            oa.chat.completions.create(model="dead", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 502 and "connect" in str(e.value)
    finally:
        server.stop()


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_client_disconnect_cancels_upstream(gateway, fakes, model):
    fake = fakes[0] if model == "gpt-fake" else fakes[1]
    fake.queue(Reply(text="slow " * 200, chunk_size=5, event_delay=0.05))
    with httpx.stream("POST", gateway.url + (OPENAI_PATH if model == "gpt-fake" else ANTHROPIC_PATH),
                      json={"model": model, "max_tokens": 500, "stream": True,
                            "messages": [{"role": "user", "content": "x"}]},
                      headers={"authorization": f"Bearer {gateway.key}"}, timeout=30) as resp:
        assert resp.status_code == 200
        for _ in zip(range(3), resp.iter_bytes()):
            pass
    closed_at = time.monotonic()
    assert fake.client_disconnected.wait(2.0), "upstream connection was not closed"
    assert time.monotonic() - closed_at < 1.5


# ---- hostile bodies (issue #12): 400s in the caller's dialect, never a 500 ---------------

DEEP = 300  # past orjson's 255 levels on the way out


def deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ['{"a": 1}', '["message"]'])
def test_responses_item_type_of_another_json_type_is_400(gateway, kind):
    body = ('{"model": "gpt-fake", "input": [{"type": %s, "role": "user", "content": "x"}]}'
            % kind).encode()
    resp = post(gateway, "/v1/responses", body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "input[0].type"


@pytest.mark.parametrize("path, body, shape", [
    (OPENAI_PATH, '{"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], '
                  '"tools": [{"type": "function", "function": {"name": "f", "parameters": %s}}]}',
     "openai"),
    (OPENAI_PATH, '{"model": "claude-fake", "messages": [{"role": %s, "content": "x"}]}',
     "openai"),
    (ANTHROPIC_PATH, '{"model": "gpt-fake", "max_tokens": 5, "messages": [{"role": "user", '
                     '"content": "x"}], "tools": [{"name": "f", "input_schema": {"type": '
                     '"object", "properties": %s}}]}', "anthropic"),
    (ANTHROPIC_PATH, '{"model": "claude-fake", "max_tokens": 5, "messages": [{"role": "user", '
                     '"content": "x"}], "metadata": {"user_id": "u"}, "thinking": %s}',
     "anthropic"),
    ("/v1/responses", '{"model": "claude-fake", "input": "x", "metadata": %s}', "openai"),
])
def test_deep_nesting_is_a_400_in_each_dialect(gateway, path, body, shape):
    """Once a RecursionError (quoting the role) or orjson's recursion limit (encoding the
    upstream request): a 500."""
    # 1,000 levels: past Python's recursion limit for repr(), within orjson's for parsing.
    resp = post(gateway, path, (body % deep_json(1000)).encode())
    assert resp.status_code == 400, resp.text
    data = resp.json()
    if shape == "anthropic":
        assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    else:
        assert data["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def aws_key(gateway):
    akid, secret = gateway.new_aws_key()
    deadline = time.monotonic() + 5
    while gateway.app.keys.by_aws_access_key_id(akid) is None:  # the key cache polls
        assert time.monotonic() < deadline, "new key not picked up"
        time.sleep(0.05)
    return akid, secret


def converse(gateway, aws_key, model: str, action: str, body: dict | bytes) -> httpx.Response:
    """A SigV4-signed Converse call as botocore signs it; the body as given (boto3 itself
    would refuse to serialize an unknown union member)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{gateway.url}/model/{model}/{action}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    request = AWSRequest(method="POST", url=url, data=data,
                         headers={"content-type": "application/json"})
    SigV4Auth(Credentials(*aws_key), "bedrock", "us-east-1").add_auth(request)
    return httpx.post(url, content=data, headers=dict(request.headers.items()), timeout=30)


TOOLS = [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]


@pytest.mark.parametrize("action", ["converse", "converse-stream"])
def test_bedrock_unknown_tool_choice_is_a_validation_exception(gateway, aws_key, action):
    resp = converse(gateway, aws_key, "claude-fake", action, {
        "messages": [{"role": "user", "content": [{"text": "x"}]}],
        "toolConfig": {"tools": TOOLS, "toolChoice": {"a": {}}}})
    assert resp.status_code == 400, resp.text
    assert resp.headers["x-amzn-errortype"] == "ValidationException"
    assert "toolConfig.toolChoice" in resp.json()["message"]


def test_bedrock_deep_tool_result_json_is_a_validation_exception(gateway, aws_key):
    """The decoder serialized it: orjson's recursion limit, a 500."""
    body = ('{"messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "t", '
            '"content": [{"json": %s}]}}]}]}' % deep_json(DEEP)).encode()
    resp = converse(gateway, aws_key, "gpt-fake", "converse", body)
    assert resp.status_code == 400, resp.text
    assert resp.headers["x-amzn-errortype"] == "ValidationException"
    assert "nested deeper than" in resp.json()["message"]
