"""LangChain's Bedrock classes (package ``langchain-aws``), unchanged, pointed at the
gateway with ``endpoint_url`` and a key pair from ``modelmart keys create --aws``:
``ChatBedrock`` (InvokeModel, with the body of each provider it knows), ``ChatBedrockConverse``
(Converse) and ``BedrockEmbeddings`` (InvokeModel embeddings bodies), over the bundled model
and the fake upstreams."""

from __future__ import annotations

import operator
from functools import reduce

import pytest
from langchain_aws import BedrockEmbeddings, ChatBedrock, ChatBedrockConverse
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool

from tests.conformance.providers import MODEL, PROVIDERS
from tests.fakes.script import Reply, ToolCall

from .helpers import EMBED_MODELS

# ChatBedrock's names for the bodies it writes: Anthropic Messages, a Llama 3 prompt, a
# Mistral prompt, a Titan Text prompt.
LANGCHAIN_PROVIDERS = ("anthropic", "meta", "mistral", "amazon")
QUESTION = [SystemMessage("Answer in one word."), HumanMessage("Name a colour.")]


@pytest.fixture
def aws(bedrock_gateway, aws_pair, fakes):
    return {"endpoint_url": bedrock_gateway.url, "region_name": "us-east-1",
            "aws_access_key_id": aws_pair[0], "aws_secret_access_key": aws_pair[1]}


def text(message) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def chat_bedrock(aws, model: str, provider: str, **kw) -> ChatBedrock:
    # A catalog id says nothing of the body, so the provider is named, as for an ARN; for
    # Meta, the base model picks the template (Llama 3's here).
    base = {"base_model_id": "meta.llama3-8b-instruct-v1:0"} if provider == "meta" else {}
    return ChatBedrock(model_id=model, provider=provider, max_tokens=16, **base, **aws, **kw)


@pytest.mark.parametrize("upstream", PROVIDERS)
@pytest.mark.parametrize("provider", LANGCHAIN_PROVIDERS)
def test_chat_bedrock(aws, fakes, provider, upstream):
    llm = chat_bedrock(aws, MODEL[upstream], provider)
    answer = llm.invoke(QUESTION)
    streamed = reduce(operator.add, llm.stream(QUESTION))
    for message in (answer, streamed):
        if upstream == "local":
            assert text(message).strip()
        else:
            assert text(message) == "echo: Name a colour."
    # LangChain takes a streamed answer's usage from the invocation metrics of the last
    # chunk: for Anthropic always, for Llama and Mistral when it stopped by itself (the
    # fakes' answers do; the bundled model may run out of tokens), for Titan never.
    counted = [answer]
    if provider == "anthropic" or (provider in ("meta", "mistral") and upstream != "local"):
        counted.append(streamed)
    for message in counted:
        usage = message.usage_metadata
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        if upstream != "local":  # the fakes' counts, each once
            assert (usage["input_tokens"], usage["output_tokens"]) == (11, 7)
    if upstream != "local":
        sent = str(fakes[upstream].received[-1].body)
        assert "Answer in one word." in sent and "<|" not in sent and "[INST]" not in sent


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return "sunny"


@pytest.mark.parametrize("upstream", ["openai", "anthropic", "bedrock", "gemini"])
def test_chat_bedrock_tool_calls(aws, fakes, upstream):
    fakes[upstream].queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
                          Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
    llm = chat_bedrock(aws, MODEL[upstream], "anthropic").bind_tools([get_weather])
    answer = llm.invoke("Weather in Paris?")
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("get_weather", {"city": "Paris"})]
    streamed = reduce(operator.add, llm.stream("Weather in Oslo?"))
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [("get_weather", {"city": "Oslo"})]


@pytest.mark.parametrize("upstream", PROVIDERS)
def test_chat_bedrock_converse(aws, fakes, upstream):
    llm = ChatBedrockConverse(model=MODEL[upstream], max_tokens=16, **aws)
    answer = llm.invoke(QUESTION)
    streamed = reduce(operator.add, llm.stream(QUESTION))
    for message in (answer, streamed):
        assert text(message).strip() if upstream == "local" else text(message) == "echo: Name a colour."
        assert message.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("upstream", ["openai", "bedrock", "gemini"])
def test_chat_bedrock_converse_tool_calls(aws, fakes, upstream):
    fakes[upstream].queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Rome"})]))
    llm = ChatBedrockConverse(model=MODEL[upstream], **aws).bind_tools([get_weather])
    answer = llm.invoke("Weather in Rome?")
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("get_weather", {"city": "Rome"})]


@pytest.mark.parametrize("upstream, provider", [
    ("local", "amazon"), ("openai", "amazon"), ("gemini", "cohere"), ("titan", "amazon"),
    ("cohere", "cohere"), ("local", "cohere")])
def test_bedrock_embeddings(aws, upstream, provider):
    embedder = BedrockEmbeddings(model_id=EMBED_MODELS[upstream], provider=provider, **aws)
    one = embedder.embed_query("The cat sat on the mat.")
    many = embedder.embed_documents(["The cat sat on the mat.", "A dog barked."])
    assert len(many) == 2 and len(one) == len(many[0]) > 100
    assert max(abs(a - b) for a, b in zip(one, many[0])) < 1e-5


def test_bedrock_embeddings_nova_body(aws):
    # LangChain writes the Nova body for model ids naming Nova embeddings; a catalog id with
    # those words gets it too.
    embedder = BedrockEmbeddings(model_id=EMBED_MODELS["nova"], provider="amazon", **aws)
    embedder.model_id = "amazon.nova-2-multimodal-embeddings-v1:0"
    assert embedder._is_nova_embed
    embedder.model_id = EMBED_MODELS["nova"]
    assert len(embedder.embed_query("hello")) == 3072
