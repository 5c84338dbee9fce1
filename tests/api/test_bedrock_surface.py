"""The Bedrock Runtime surface: boto3's bedrock-runtime client, SigV4-signed, unchanged."""

from __future__ import annotations

import time

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tests.fakes.script import Reply, ToolCall

TOOL = {"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                     "inputSchema": {"json": {"type": "object",
                                              "properties": {"city": {"type": "string"}}}}}}


@pytest.fixture(scope="module")
def aws_key(gateway):
    akid, secret = gateway.new_aws_key()
    deadline = time.monotonic() + 3
    while gateway.app.keys.by_aws_access_key_id(akid) is None:  # the key cache polls
        assert time.monotonic() < deadline, "new key not picked up"
        time.sleep(0.05)
    return akid, secret


def client(gateway, akid, secret):
    return boto3.client("bedrock-runtime", endpoint_url=gateway.url, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture
def bedrock(gateway, aws_key, fakes):
    return client(gateway, *aws_key)


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake", "smollm2-135m"])
def test_converse(bedrock, model):
    resp = bedrock.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}],
                            inferenceConfig={"maxTokens": 12})
    text = resp["output"]["message"]["content"][0]["text"]
    assert text and resp["stopReason"] in ("end_turn", "max_tokens")
    assert resp["usage"]["inputTokens"] > 0 and resp["usage"]["outputTokens"] > 0
    if model != "smollm2-135m":
        assert text == "echo: hi"


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake", "smollm2-135m"])
def test_converse_stream(bedrock, model):
    resp = bedrock.converse_stream(modelId=model, inferenceConfig={"maxTokens": 12},
                                   messages=[{"role": "user", "content": [{"text": "stream"}]}])
    events = list(resp["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and "messageStop" in kinds and kinds[-1] == "metadata"
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events
                   if "contentBlockDelta" in e)
    assert text
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_streamed_tool_use(bedrock, model, fakes):
    for fake in fakes:
        fake.queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                     ToolCall("get_weather", {"city": "Kyiv"})], chunk_size=2))
    resp = bedrock.converse_stream(modelId=model, toolConfig={"tools": [TOOL]},
                                   messages=[{"role": "user", "content": [{"text": "w"}]}])
    inputs, names = {}, {}
    for event in resp["stream"]:
        if "contentBlockStart" in event:
            i = event["contentBlockStart"]["contentBlockIndex"]
            names[i] = event["contentBlockStart"]["start"]["toolUse"]["name"]
        if "contentBlockDelta" in event and "toolUse" in event["contentBlockDelta"]["delta"]:
            i = event["contentBlockDelta"]["contentBlockIndex"]
            inputs[i] = inputs.get(i, "") + event["contentBlockDelta"]["delta"]["toolUse"]["input"]
    import json
    assert [json.loads(inputs[i]) for i in sorted(inputs)] == [{"city": "Paris"}, {"city": "Kyiv"}]
    assert set(names.values()) == {"get_weather"}


def test_wrong_secret_is_refused(gateway, aws_key):
    bad = client(gateway, aws_key[0], "not-the-secret-at-all-0000000000000000000")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.converse(modelId="gpt-fake", messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_access_key_is_refused(gateway):
    bad = client(gateway, "AKMMNOTAREALKEY00000", "whatever")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.converse(modelId="gpt-fake", messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401


def test_validation_and_not_found_in_aws_shape(bedrock):
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.converse(modelId="nope", messages=[{"role": "user", "content": [{"text": "x"}]}])
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.converse(modelId="gpt-fake", messages=[{"role": "assistant", "content": []}])
