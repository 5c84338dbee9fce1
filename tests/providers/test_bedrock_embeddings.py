"""BedrockProvider.embed against FakeBedrock over loopback: Titan, Nova and Cohere models
through SigV4-signed InvokeModel (the fake recomputes every signature with botocore), one
text a call for Titan and Nova, 96 for Cohere, a few calls at a time, errors mapped."""

from __future__ import annotations

import math

import pytest

from modelmart.core.embeddings import EmbeddingRequest
from modelmart.core.errors import InvalidRequest, RateLimited
from modelmart.providers.base import ProviderConfig
from modelmart.providers.bedrock import EMBED_CONCURRENCY, BedrockProvider
from modelmart.providers.http import new_session
from modelmart.routing.embed import can_embed
from tests.fakes import bedrock_embeddings
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.script import Reply

AKID, SECRET, REGION = "AKIDEMBEDEXAMPLE", "embed/secret/key/EXAMPLE000000000000000", "us-west-2"
KEYS = {"aws_access_key_id": AKID, "aws_secret_access_key": SECRET, "region": REGION}
TITAN = "amazon.titan-embed-text-v2:0"
NOVA = "amazon.nova-2-multimodal-embeddings-v1:0"
COHERE = "cohere.embed-english-v3"


@pytest.fixture(scope="module")
def server():
    fake = FakeBedrock(AKID, SECRET, REGION).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.replies.clear()
    server.received.clear()
    return server


@pytest.fixture
async def session():
    http = new_session()
    yield http
    await http.close()


def provider(session, fake, model: str, **options) -> BedrockProvider:
    config = ProviderConfig(kind="bedrock", model=model, base_url=fake.base_url,
                            options={**KEYS, **options}, name="emb")
    return BedrockProvider(config, session)


async def test_titan_counts_its_tokens(session, fake):
    resp = await provider(session, fake, TITAN).embed(
        EmbeddingRequest("m", ["one two three", "four"], dimensions=256))
    assert [len(v) for v in resp.vectors] == [256, 256]
    assert resp.vectors[0] == pytest.approx(bedrock_embeddings.vector(TITAN, "one two three", 256))
    assert (resp.input_tokens, resp.estimated) == (4, False)
    assert [r.body["inputText"] for r in fake.received] == ["one two three", "four"]
    assert all(r.path == "/model/amazon.titan-embed-text-v2%3A0/invoke" for r in fake.received)


async def test_nova_and_cohere_are_estimated(session, fake):
    nova = await provider(session, fake, NOVA).embed(EmbeddingRequest("m", ["a b c d"]))
    assert len(nova.vectors[0]) == 3072 and nova.estimated and nova.input_tokens == 2
    body = fake.received[-1].body
    assert body["taskType"] == "SINGLE_EMBEDDING"
    assert body["singleEmbeddingParams"]["text"] == {"truncationMode": "NONE", "value": "a b c d"}
    texts = [f"text {i}" for i in range(200)]
    cohere = await provider(session, fake, COHERE).embed(EmbeddingRequest("m", texts))
    assert len(cohere.vectors) == 200 and cohere.estimated
    assert cohere.vectors[150] == pytest.approx(bedrock_embeddings.vector(COHERE, "text 150", 1024))
    calls = [r.body["texts"] for r in fake.received if "texts" in r.body]
    assert [len(c) for c in calls] == [96, 96, 8] and sum(calls, []) == texts


async def test_order_is_kept_and_calls_are_bounded(session, fake):
    fake.invoke_delay, fake.peak_invoking = 0.05, 0
    try:
        texts = [f"t{i}" for i in range(30)]
        resp = await provider(session, fake, TITAN).embed(EmbeddingRequest("m", texts))
    finally:
        fake.invoke_delay = 0.0
    for text, got in zip(texts, resp.vectors):
        assert got == pytest.approx(bedrock_embeddings.vector(TITAN, text, 1024))
    assert 1 < fake.peak_invoking <= EMBED_CONCURRENCY


async def test_errors_map_to_the_canonical_tree(session, fake):
    with pytest.raises(InvalidRequest) as e:
        await provider(session, fake, TITAN).embed(EmbeddingRequest("m", ["x"], dimensions=300))
    assert "dimensions" in e.value.message and e.value.status == 400
    fake.queue(Reply(error_status=429, error_message="Too many requests", retry_after=2))
    with pytest.raises(RateLimited) as e:
        await provider(session, fake, NOVA).embed(EmbeddingRequest("m", ["x"]))
    assert e.value.retry_after == 2


async def test_a_wrong_secret_is_refused(session, fake):
    config = ProviderConfig(kind="bedrock", model=TITAN, base_url=fake.base_url, name="emb",
                            options={**KEYS, "aws_secret_access_key": "wrong" * 8})
    with pytest.raises(Exception) as e:
        await BedrockProvider(config, session).embed(EmbeddingRequest("m", ["x"]))
    assert getattr(e.value, "status", None) == 403


def test_which_deployments_embed(session, fake):
    assert can_embed(provider(session, fake, TITAN))
    assert can_embed(provider(session, fake, "arn:aws:bedrock:us-east-1::foundation-model/" + COHERE))
    assert not can_embed(provider(session, fake, "anthropic.claude-3-5-haiku-20241022-v1:0"))
    # An id that does not say it (an application inference profile): the option does.
    named = provider(session, fake, "arn:aws:bedrock:us-east-1:123456789012:"
                     "application-inference-profile/abc123", embeddings="titan")
    assert can_embed(named) and named.embed_family == "titan_embed"
    with pytest.raises(ValueError, match="options.embeddings"):
        provider(session, fake, TITAN, embeddings="word2vec")


def test_vectors_are_unit_length():
    values = bedrock_embeddings.vector(TITAN, "x", 8)
    assert math.isclose(math.fsum(v * v for v in values), 1.0)
