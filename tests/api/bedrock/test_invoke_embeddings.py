"""Embeddings through InvokeModel (Titan, Nova and Cohere bodies) over every upstream that
embeds — the bundled model, the fake OpenAI and Gemini, and the fake Bedrock's Titan, Nova
and Cohere models (the Bedrock embeddings upstream) — and the Bedrock embeddings upstream
behind the OpenAI SDK's ``embeddings.create``."""

from __future__ import annotations

import json
import math

import openai
import pytest

from tests.conformance.providers import MODEL
from tests.fakes.script import Reply

from .helpers import BEDROCK_EMBED_IDS, EMBED_MODELS, client, ledger_rows, request_id

TITAN = {"inputText": "The cat sat on the mat.", "normalize": True}
NOVA = {"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": {
    "embeddingPurpose": "GENERIC_INDEX", "text": {"truncationMode": "END",
                                                  "value": "The cat sat on the mat."}}}
COHERE = {"texts": ["The cat sat on the mat.", "A dog barked."], "input_type": "search_document"}


@pytest.fixture
def runtime(bedrock_gateway, aws_pair, fakes):
    return client(bedrock_gateway, aws_pair)


def invoke(runtime, model, payload):
    resp = runtime.invoke_model(modelId=model, body=json.dumps(payload))
    return resp, json.loads(resp["body"].read())


def vectors_of(payload: dict, answer: dict) -> list[list[float]]:
    if "inputText" in payload:
        return [answer["embedding"]]
    if "taskType" in payload:
        return [e["embedding"] for e in answer["embeddings"]]
    return answer["embeddings"]


def norm(v) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


@pytest.mark.parametrize("upstream", list(EMBED_MODELS))
@pytest.mark.parametrize("payload", [TITAN, NOVA, COHERE], ids=["titan", "nova", "cohere"])
def test_embeddings_bodies_over_every_upstream(runtime, bedrock_gateway, payload, upstream):
    resp, answer = invoke(runtime, EMBED_MODELS[upstream], payload)
    vectors = vectors_of(payload, answer)
    inputs = payload.get("texts") or ["The cat sat on the mat."]
    assert len(vectors) == len(inputs) and all(len(v) > 100 for v in vectors)
    if payload is TITAN:
        assert abs(norm(vectors[0]) - 1) < 1e-6 and answer["inputTextTokenCount"] > 0
    if payload is COHERE:
        assert answer["texts"] == inputs and answer["response_type"] == "embeddings_floats"
    tokens = int(resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"])
    row = ledger_rows(bedrock_gateway, [request_id(resp)])[request_id(resp)]
    assert (row.surface, row.status, row.input_tokens, row.output_tokens) == (
        "bedrock_invoke", "ok", tokens, 0)
    if upstream != "local":
        assert row.price_pico > 0


def test_local_vectors_are_the_models_own(runtime):
    """The same text gives the same vector whichever body asked for it."""
    _, titan = invoke(runtime, MODEL["local"], {"inputText": "hello world"})
    _, cohere = invoke(runtime, MODEL["local"], {"texts": ["hello world"], "input_type": "search_query"})
    assert len(titan["embedding"]) == 576
    assert max(abs(a - b) for a, b in zip(titan["embedding"], cohere["embeddings"][0])) < 1e-5


def test_what_the_bedrock_upstream_received(runtime, fakes):
    invoke(runtime, EMBED_MODELS["titan"], {"inputText": "one two", "dimensions": 256})
    got = fakes["bedrock"].received[-1]
    assert got.path.endswith("/invoke") and "amazon.titan-embed-text-v2%3A0" in got.path
    assert got.body == {"modelId": BEDROCK_EMBED_IDS["titan"], "inputText": "one two",
                        "dimensions": 256}
    assert got.headers["Authorization"].startswith("AWS4-HMAC-SHA256")
    fakes["bedrock"].received.clear()
    invoke(runtime, EMBED_MODELS["cohere"], COHERE)
    (got,) = fakes["bedrock"].received  # two texts, one call
    assert got.body["texts"] == COHERE["texts"]


def test_titan_binary_and_dimensions(runtime):
    _, answer = invoke(runtime, EMBED_MODELS["titan"], {
        "inputText": "x y", "dimensions": 512, "embeddingTypes": ["float", "binary"]})
    assert len(answer["embedding"]) == 512
    assert set(answer["embeddingsByType"]["binary"]) <= {0, 1}
    assert answer["embeddingsByType"]["float"] == answer["embedding"]


def test_a_chat_model_does_not_embed(runtime):
    for model in (MODEL["bedrock"], MODEL["anthropic"]):
        with pytest.raises(runtime.exceptions.ValidationException) as e:
            invoke(runtime, model, TITAN)
        assert "does not support embeddings" in e.value.response["Error"]["Message"]


def test_an_upstream_refusal_comes_back(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        invoke(runtime, EMBED_MODELS["titan"], {"inputText": "x", "dimensions": 300})
    assert "dimensions" in e.value.response["Error"]["Message"]


def test_upstream_throttling(runtime, fakes):
    fakes["bedrock"].queue(Reply(error_status=429, error_message="slow down"))
    with pytest.raises(runtime.exceptions.ThrottlingException):
        invoke(runtime, EMBED_MODELS["nova"], NOVA)


# ---- the Bedrock embeddings upstream behind the other surfaces ---------------------------


@pytest.mark.parametrize("name", ["titan", "nova", "cohere"])
def test_openai_sdk_over_a_bedrock_embeddings_model(bedrock_gateway, fakes, name):
    sdk = openai.OpenAI(base_url=f"{bedrock_gateway.url}/v1", api_key=bedrock_gateway.key,
                        max_retries=0)
    texts = [f"text number {i}" for i in range(5)]
    size = {"dimensions": 256} if name != "cohere" else {}  # Cohere v3 has one size
    raw = sdk.embeddings.with_raw_response.create(model=EMBED_MODELS[name], input=texts, **size)
    resp = raw.parse()
    assert [d.index for d in resp.data] == list(range(5))
    assert all(len(d.embedding) == size.get("dimensions", 1024) for d in resp.data)
    calls = [r for r in fakes["bedrock"].received if r.path.endswith("/invoke")]
    assert len(calls) == (1 if name == "cohere" else 5)
    row = ledger_rows(bedrock_gateway, [raw.headers["x-request-id"]])[raw.headers["x-request-id"]]
    assert row.provider == "bedrock" and row.input_tokens == resp.usage.prompt_tokens > 0
    # Titan counts its tokens; Nova's and Cohere's bodies do not, so they are estimated.
    assert bool(row.extra.get("usage_estimated")) == (name != "titan")


def test_the_same_text_gives_the_same_vector_on_both_surfaces(bedrock_gateway, runtime):
    sdk = openai.OpenAI(base_url=f"{bedrock_gateway.url}/v1", api_key=bedrock_gateway.key,
                        max_retries=0)
    via_openai = sdk.embeddings.create(model=EMBED_MODELS["titan"], input="same text",
                                       encoding_format="float").data[0].embedding
    _, via_invoke = invoke(runtime, EMBED_MODELS["titan"], {"inputText": "same text"})
    assert max(abs(a - b) for a, b in zip(via_openai, via_invoke["embedding"])) < 1e-6
