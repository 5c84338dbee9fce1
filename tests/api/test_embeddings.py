"""``POST /v1/embeddings`` end to end with the official openai SDK: the bundled model's real
vectors, the fake OpenAI and Gemini upstreams, fallback, errors, and the ledger."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import time

import httpx
import llama_cpp
import openai
import pytest

from modelmart.providers.local.model import _extra_buffers, bundled_model_path
from modelmart.store.base import open_store
from tests.conftest import UPSTREAM_KEY
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.gemini_server import _fake_vector as gemini_vector
from tests.fakes.openai_server import fake_tokens, fake_vector
from tests.fakes.script import Reply, free_port
from tests.harness import GatewayServer

LOCAL = "smollm2-135m"
GEMINI_KEY = "AIza-embed-test"
CAT = "The cat sat on the mat."
MONEY = "Quarterly revenue grew by twelve percent."
# Per million tokens: what the upstream charges and what the customer pays.
SMALL_COST = {"input": 0.02, "output": 0, "caching": False}
SMALL_PRICE = {"input": 0.05, "output": 0, "caching": False}
PICO_PER_TOKEN_COST, PICO_PER_TOKEN_PRICE = 20_000, 50_000


def _openai(fake, model="text-embedding-3-small", **extra):
    return {"provider": "openai", "model": model, "base_url": f"{fake.base_url}/v1",
            "api_key": UPSTREAM_KEY, "cost": SMALL_COST, **extra}


def catalog(fake_openai, fake_anthropic, fake_gemini) -> dict:
    anthropic = {"provider": "anthropic", "model": "claude-sonnet-4-5",
                 "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY}
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    return {"models": {
        "embed-small": {**_openai(fake_openai), "price": SMALL_PRICE},
        "embed-gemini": {"provider": "gemini", "model": "gemini-embedding-001",
                         "base_url": fake_gemini.base_url, "api_key": GEMINI_KEY,
                         "cost": {"input": 0.15, "output": 0, "caching": False},
                         "price": {"markup": "1"}},
        "claude-fake": {**anthropic, "price": {"markup": "0.5"}},
        # A chat-only deployment first: embeddings skip it for the one that can embed.
        "embed-mixed": {"price": SMALL_PRICE, "deployments": [
            {**anthropic, "name": "mixed/anthropic"}, {**_openai(fake_openai), "name": "mixed/openai"}]},
        "embed-fallback": {"price": SMALL_PRICE, "deployments": [
            {**_openai(fake_openai), "base_url": closed, "name": "fb/down"},
            {**_openai(fake_openai), "name": "fb/up"}]},
        "embed-twice": {"price": SMALL_PRICE, "deployments": [
            {**_openai(fake_openai), "name": "twice/a"}, {**_openai(fake_openai), "name": "twice/b"}]},
        # The upstream does not know this model: its 404 comes back as a 404.
        "embed-unknown-upstream": {**_openai(fake_openai, "text-embedding-9"), "price": SMALL_PRICE},
    }}


@pytest.fixture(scope="module")
def fake_gemini():
    server = FakeGemini(api_key=GEMINI_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(fake_openai, fake_anthropic, fake_gemini):
    server = GatewayServer(catalog(fake_openai, fake_anthropic, fake_gemini)).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_fakes(fake_openai, fake_gemini):
    for fake in (fake_openai, fake_gemini):
        fake.replies.clear()
        fake.received.clear()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)


@pytest.fixture(scope="module")
def vocab():
    """SmolLM2's tokenizer and metadata, read independently of the gateway."""
    llama = llama_cpp.Llama(model_path=bundled_model_path(), vocab_only=True, verbose=False)
    yield llama
    llama.close()


def post(gateway, body, *, key=None, path="/v1/embeddings") -> httpx.Response:
    key = gateway.key if key is None else key
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=120)


def fresh_key(gateway, **options) -> str:
    key = gateway.new_key(**options)
    deadline = time.monotonic() + 5
    while gateway.app.keys.lookup(key) is None:  # the key cache polls the store
        assert time.monotonic() < deadline, "the gateway never loaded the new key"
        time.sleep(0.02)
    return key


def ledger_row(gateway, request_id: str, timeout: float = 10.0):
    async def fetch():
        store = await open_store(gateway.database_url)
        try:
            return await store.get_usage(request_id)
        finally:
            await store.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = asyncio.run(fetch())
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def norm(v) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


def cosine(a, b) -> float:
    return math.fsum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def float32(values) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


# ---- the bundled model -----------------------------------------------------------------


def test_local_model_gives_real_unit_vectors(client, vocab):
    resp = client.embeddings.create(model=LOCAL, input=[CAT, MONEY, CAT], encoding_format="float")
    size = int(vocab.metadata["llama.embedding_length"])  # the GGUF's hidden size
    assert size == 576
    vectors = [d.embedding for d in resp.data]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(len(v) == size for v in vectors)
    assert all(abs(norm(v) - 1) < 1e-6 for v in vectors)
    assert vectors[0] == vectors[2]  # the same text, the same vector
    assert cosine(vectors[0], vectors[1]) < 0.99  # different texts, different directions
    assert resp.model == LOCAL
    tokens = sum(len(vocab.tokenize(t.encode())) for t in (CAT, MONEY, CAT))
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == tokens


def test_local_vectors_do_not_depend_on_their_batch(client):
    alone = client.embeddings.create(model=LOCAL, input=MONEY, encoding_format="float")
    again = client.embeddings.create(model=LOCAL, input=["Hello.", MONEY], encoding_format="float")
    assert alone.data[0].embedding == again.data[1].embedding


def test_local_vector_is_the_mean_over_every_token(client):
    """A reference computed apart: llama.cpp's per-token states, averaged here. The input is
    longer than llama.cpp's default micro-batch (512), which once pooled only its tail."""
    text = " ".join(f"w{i}" for i in range(160))
    with _extra_buffers(False):
        ref = llama_cpp.Llama(model_path=bundled_model_path(), embedding=True, n_ctx=2048,
                              n_batch=2048, n_ubatch=2048, n_threads=1, verbose=False,
                              pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE)
    try:
        states = ref.embed(text)
    finally:
        ref.close()
    assert len(states) > 512
    mean = [math.fsum(col) / len(states) for col in zip(*states)]
    expected = [x / norm(mean) for x in mean]
    got = client.embeddings.create(model=LOCAL, input=text, encoding_format="float").data[0].embedding
    assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-4


def test_local_base64_is_what_the_sdk_decodes_by_default(gateway, client):
    floats = client.embeddings.create(model=LOCAL, input=CAT, encoding_format="float")
    default = client.embeddings.create(model=LOCAL, input=CAT)  # the SDK asks for base64
    assert default.data[0].embedding == float32(floats.data[0].embedding)
    raw = post(gateway, {"model": LOCAL, "input": [CAT], "encoding_format": "base64"})
    assert raw.status_code == 200
    encoded = raw.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack("<576f", base64.b64decode(encoded))
    assert list(decoded) == float32(floats.data[0].embedding)


def test_local_ledger_records_the_tokens_free_of_charge(gateway, client, vocab):
    raw = client.embeddings.with_raw_response.create(model=LOCAL, input=[CAT, MONEY])
    resp = raw.parse()
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert row.input_tokens == resp.usage.prompt_tokens == sum(
        len(vocab.tokenize(t.encode())) for t in (CAT, MONEY))
    assert (row.output_tokens, row.cost_pico, row.price_pico) == (0, 0, 0)
    assert (row.surface, row.model, row.deployment, row.status) == (
        "openai_embeddings", LOCAL, f"{LOCAL}/local", "ok")
    assert row.extra == {}  # counted by the model's tokenizer, not estimated
    assert raw.headers["x-modelmart-deployment"] == f"{LOCAL}/local"


def test_local_model_refuses_other_dimensions(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=LOCAL, input=CAT, dimensions=128)
    assert "576-dimensional" in e.value.message
    assert e.value.body["param"] == "dimensions"
    same = client.embeddings.create(model=LOCAL, input=CAT, dimensions=576, encoding_format="float")
    assert len(same.data[0].embedding) == 576


def test_local_model_refuses_an_input_longer_than_its_context(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=LOCAL, input=["short", "word " * 2100])
    assert "input[1]" in e.value.message and "2048 tokens" in e.value.message


def test_local_model_still_chats_after_embedding(client):
    client.embeddings.create(model=LOCAL, input=CAT)
    chat = client.chat.completions.create(model=LOCAL, max_tokens=5, temperature=0,
                                          messages=[{"role": "user", "content": "Say hi."}])
    assert chat.choices[0].message.content.strip()


# ---- OpenAI-compatible upstreams -------------------------------------------------------


def test_openai_upstream_vectors_pass_through_exactly(client, fake_openai):
    raw = client.embeddings.with_raw_response.create(
        model="embed-small", input=[CAT, MONEY], encoding_format="float", user="u-7")
    resp = raw.parse()
    assert [d.embedding for d in resp.data] == [
        fake_vector("text-embedding-3-small", t, 1536) for t in (CAT, MONEY)]
    assert resp.model == "embed-small"
    assert resp.usage.prompt_tokens == fake_tokens(CAT) + fake_tokens(MONEY)
    (sent,) = fake_openai.received
    assert sent.path == "/v1/embeddings"
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.body == {"model": "text-embedding-3-small", "input": [CAT, MONEY],
                         "encoding_format": "base64", "user": "u-7"}
    assert raw.headers["x-modelmart-deployment"] == "embed-small/openai-0"


def test_openai_upstream_with_sdk_defaults_and_dimensions(client, fake_openai):
    resp = client.embeddings.create(model="embed-small", input=CAT, dimensions=256)
    assert resp.data[0].embedding == fake_vector("text-embedding-3-small", CAT, 256)
    assert fake_openai.received[0].body["dimensions"] == 256


def test_unknown_fields_reach_an_openai_upstream(gateway, fake_openai):
    resp = post(gateway, {"model": "embed-small", "input": "x", "truncate": "END"})
    assert resp.status_code == 200
    assert fake_openai.received[0].body["truncate"] == "END"


def test_ledger_bills_input_tokens_at_the_input_price(gateway, client):
    raw = client.embeddings.with_raw_response.create(model="embed-small", input=[CAT, MONEY, "ok"])
    resp = raw.parse()
    tokens = fake_tokens(CAT) + fake_tokens(MONEY) + fake_tokens("ok")
    assert resp.usage.prompt_tokens == tokens
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert (row.input_tokens, row.output_tokens) == (tokens, 0)
    assert row.cost_pico == tokens * PICO_PER_TOKEN_COST
    assert row.price_pico == tokens * PICO_PER_TOKEN_PRICE
    assert (row.surface, row.model, row.provider, row.status, row.http_status) == (
        "openai_embeddings", "embed-small", "openai", "ok", 200)
    assert math.isclose(raw.http_response.json()["usage"]["cost"], tokens * 5e-8, rel_tol=1e-12)
    assert raw.headers["x-modelmart-cost"] == f"{tokens * 5e-8:.12f}"


def test_the_path_without_v1_works_too(gateway):
    resp = post(gateway, {"model": "embed-small", "input": "x"}, path="/embeddings")
    assert resp.status_code == 200 and resp.json()["object"] == "list"


def test_a_chat_only_deployment_is_skipped(client):
    raw = client.embeddings.with_raw_response.create(model="embed-mixed", input=CAT)
    assert raw.headers["x-modelmart-deployment"] == "mixed/openai"
    assert raw.headers["x-modelmart-attempts"] == "1"


def test_fallback_after_a_connection_failure(gateway, client):
    raw = client.embeddings.with_raw_response.create(model="embed-fallback", input=CAT)
    assert raw.parse().data[0].embedding == float32(fake_vector("text-embedding-3-small", CAT, 1536))
    assert raw.headers["x-modelmart-deployment"] == "fb/up"
    assert raw.headers["x-modelmart-attempts"] == "2"
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert (row.deployment, row.attempts) == ("fb/up", 2)


def test_fallback_after_an_upstream_5xx(client, fake_openai):
    fake_openai.queue(Reply(error_status=503, error_message="overloaded"))
    raw = client.embeddings.with_raw_response.create(model="embed-twice", input=CAT)
    assert raw.headers["x-modelmart-deployment"] == "twice/b"
    assert len(fake_openai.received) == 2


def test_no_fallback_after_an_upstream_4xx(client, fake_openai):
    fake_openai.queue(Reply(error_status=400, error_message="scripted bad request"))
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="embed-twice", input=CAT)
    assert "scripted bad request" in e.value.message
    assert len(fake_openai.received) == 1


def test_every_deployment_failing_gives_the_last_error(gateway, client, fake_openai):
    fake_openai.queue(Reply(error_status=500), Reply(error_status=503, error_message="down"))
    with pytest.raises(openai.InternalServerError) as e:
        client.embeddings.with_raw_response.create(model="embed-twice", input=CAT)
    assert e.value.status_code == 503 and "down" in e.value.message
    row = ledger_row(gateway, e.value.response.headers["x-request-id"])
    assert (row.status, row.http_status, row.attempts, row.price_pico) == ("error", 503, 2, 0)


def test_an_upstream_refusing_the_gateways_key_is_skipped_then_a_502(client, fake_openai):
    fake_openai.queue(Reply(error_status=401, error_message="Incorrect API key provided."))
    raw = client.embeddings.with_raw_response.create(model="embed-twice", input=CAT)
    assert raw.headers["x-modelmart-deployment"] == "twice/b"
    fake_openai.queue(Reply(error_status=401), Reply(error_status=403))
    with pytest.raises(openai.APIStatusError) as e:
        client.embeddings.create(model="embed-twice", input=CAT)
    assert e.value.status_code == 502
    assert "twice/b" in e.value.message and "rejected the gateway's credentials" in e.value.message


def test_an_upstream_404_keeps_its_status(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="embed-unknown-upstream", input=CAT)
    assert "text-embedding-9" in e.value.message


# ---- Gemini ----------------------------------------------------------------------------


def test_gemini_upstream(gateway, client, fake_gemini):
    texts = [CAT, MONEY, "Hello!"]
    raw = client.embeddings.with_raw_response.create(model="embed-gemini", input=texts,
                                                     encoding_format="float")
    resp = raw.parse()
    assert [d.embedding for d in resp.data] == [gemini_vector("gemini-embedding-001", t) for t in texts]
    estimate = sum(math.ceil(len(t) / 4) for t in texts)  # Gemini reports no usage
    assert resp.usage.prompt_tokens == estimate
    (sent,) = fake_gemini.received
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert sent.body == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}} for t in texts]}
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert row.input_tokens == estimate and row.extra == {"usage_estimated": True}
    assert row.cost_pico == estimate * 150_000 and row.price_pico == 2 * row.cost_pico


def test_gemini_dimensions_and_base64(client, fake_gemini):
    resp = client.embeddings.create(model="embed-gemini", input=CAT, dimensions=768)
    assert resp.data[0].embedding == float32(gemini_vector("gemini-embedding-001", CAT)[:768])
    assert fake_gemini.received[0].body["requests"][0]["outputDimensionality"] == 768


def test_gemini_batches_of_a_hundred(client, fake_gemini):
    texts = [f"text number {i}" for i in range(150)]
    resp = client.embeddings.create(model="embed-gemini", input=texts, encoding_format="float")
    assert [d.embedding for d in resp.data] == [
        gemini_vector("gemini-embedding-001", t) for t in texts]
    assert [len(r.body["requests"]) for r in fake_gemini.received] == [100, 50]


def test_gemini_errors_keep_their_status(client, fake_gemini):
    fake_gemini.queue(Reply(error_status=429, error_message="Resource has been exhausted"))
    with pytest.raises(openai.RateLimitError) as e:
        client.embeddings.create(model="embed-gemini", input=CAT)
    assert "exhausted" in e.value.message


# ---- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("body, param, words", [
    ({"model": LOCAL, "input": ""}, "input", "empty string"),
    ({"model": LOCAL, "input": []}, "input", "empty array"),
    ({"model": LOCAL, "input": 7}, "input", "expected an array"),
    ({"model": LOCAL, "input": ["a", {"text": "b"}]}, "input[1]", "expected a string"),
    ({"model": LOCAL, "input": [1, 2, 3]}, "input", "check_embedding_ctx_length=False"),
    ({"model": LOCAL, "input": [[1, 2], [3]]}, "input", "cannot embed arrays of token ids"),
    ({"model": LOCAL}, "input", "Missing required parameter: 'input'"),
    ({"input": "x"}, "model", "model"),
    ({"model": LOCAL, "input": "x", "encoding_format": "int8"}, "encoding_format", "int8"),
    ({"model": LOCAL, "input": "x", "dimensions": -3}, "dimensions", "minimum"),
])
def test_bad_requests_are_openai_400s(gateway, body, param, words):
    resp = post(gateway, body)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert (err["type"], err["param"]) == ("invalid_request_error", param)
    assert words in err["message"]
    assert resp.headers["x-request-id"]


def test_not_json(gateway):
    resp = httpx.post(gateway.url + "/v1/embeddings", content=b"{nope",
                      headers={"authorization": f"Bearer {gateway.key}"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="no-such-model", input=CAT)
    assert "no-such-model" in e.value.message and e.value.body["param"] == "model"


def test_a_chat_only_model_says_it_cannot_embed(gateway, client, fake_anthropic):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="claude-fake", input=CAT)
    assert e.value.body["message"] == "The model 'claude-fake' does not support embeddings."
    assert e.value.body["param"] == "model"


def test_an_api_key_is_required(gateway):
    resp = post(gateway, {"model": LOCAL, "input": "x"}, key="")
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    resp = post(gateway, {"model": LOCAL, "input": "x"}, key="sk-wrong")
    assert resp.status_code == 401


def test_a_key_limited_to_other_models(gateway, client):
    key = fresh_key(gateway, models=["embed-small"])
    resp = post(gateway, {"model": LOCAL, "input": "x"}, key=key)
    assert resp.status_code == 403
    assert "may not use the model 'smollm2-135m'" in resp.json()["error"]["message"]
    assert post(gateway, {"model": "embed-small", "input": "x"}, key=key).status_code == 200


def test_a_budget_too_small_for_the_inputs(gateway):
    # $0.000001 is 20 tokens at $0.05 per million; the reservation is a bound: one token a
    # UTF-8 byte, plus 8 for each input (metering/bounds.py).
    key = fresh_key(gateway, budget_usd="0.000001", period="total")
    resp = post(gateway, {"model": "embed-small", "input": ["x" * 13]}, key=key)
    assert resp.status_code == 402
    assert resp.json()["error"]["type"] == "insufficient_quota"
    assert post(gateway, {"model": "embed-small", "input": "x" * 12}, key=key).status_code == 200


def test_get_is_not_allowed(gateway):
    resp = httpx.get(gateway.url + "/v1/embeddings")
    assert resp.status_code == 405
