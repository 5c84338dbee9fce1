"""InvokeModel and InvokeModelWithResponseStream with boto3's ``bedrock-runtime`` client,
unchanged, over every provider: each native body family (Anthropic Messages, Nova, Llama,
Mistral, Titan Text), answered in its own shape, streamed as chunk events, errors in AWS's shape, and
one ledger row per request under the surface ``bedrock_invoke``."""

from __future__ import annotations

import json
import time

import anthropic
import botocore.exceptions
import httpx
import pytest

from tests.conformance.providers import MODEL, PROVIDERS
from tests.fakes.script import Reply, ToolCall

from .helpers import client, customer_rows, ledger_rows, new_aws_pair, request_id

LLAMA3 = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nAnswer in one word."
          "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n")
MISTRAL = "<<SYS>> Answer in one word. <</SYS>>\n[INST] Name a colour. [/INST]"  # as LangChain writes it


def body(family: str) -> dict:
    if family == "anthropic":
        return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16,
                "system": "Answer in one word.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]}
    if family == "nova":
        return {"schemaVersion": "messages-v1", "system": [{"text": "Answer in one word."}],
                "messages": [{"role": "user", "content": [{"text": "Name a colour."}]}],
                "inferenceConfig": {"max_new_tokens": 16, "temperature": 0.5}}
    if family == "llama":
        return {"prompt": LLAMA3, "max_gen_len": 16, "temperature": 0.5}
    if family == "titan":
        return {"inputText": "Answer in one word.\n\nUser: Name a colour.\n\nBot:",
                "textGenerationConfig": {"maxTokenCount": 16, "temperature": 0.5}}
    return {"prompt": MISTRAL, "max_tokens": 16, "temperature": 0.5}


def text_of(family: str, answer: dict) -> str:
    if family == "anthropic":
        return "".join(b["text"] for b in answer["content"] if b["type"] == "text")
    if family == "nova":
        return "".join(b.get("text", "") for b in answer["output"]["message"]["content"])
    if family == "llama":
        return answer["generation"]
    if family == "titan":
        return answer["results"][0]["outputText"]
    return answer["outputs"][0]["text"]


def streamed_text(family: str, chunks: list[dict]) -> str:
    if family == "anthropic":
        return "".join(c["delta"].get("text", "") for c in chunks if c["type"] == "content_block_delta")
    if family == "nova":
        return "".join(c["contentBlockDelta"]["delta"].get("text", "") for c in chunks
                       if "contentBlockDelta" in c)
    if family == "llama":
        return "".join(c["generation"] for c in chunks)
    if family == "titan":
        return "".join(c["outputText"] for c in chunks)
    return "".join(c["outputs"][0]["text"] for c in chunks)


FAMILIES = ("anthropic", "nova", "llama", "mistral", "titan")


@pytest.fixture
def runtime(bedrock_gateway, aws_pair, fakes):
    return client(bedrock_gateway, aws_pair)


def invoke(runtime, model, payload, **kw):
    resp = runtime.invoke_model(modelId=model, body=json.dumps(payload), **kw)
    return resp, json.loads(resp["body"].read())


def invoke_stream(runtime, model, payload):
    resp = runtime.invoke_model_with_response_stream(modelId=model, body=json.dumps(payload))
    events = list(resp["body"])
    assert all(set(e) == {"chunk"} for e in events), events
    return resp, [json.loads(e["chunk"]["bytes"]) for e in events]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_invoke(runtime, bedrock_gateway, fakes, family, provider):
    resp, answer = invoke(runtime, MODEL[provider], body(family))
    assert resp["contentType"] == "application/json"
    assert resp["ResponseMetadata"]["RequestId"] == request_id(resp)
    text = text_of(family, answer)
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) > 0
    assert int(headers["x-amzn-bedrock-output-token-count"]) > 0
    if provider == "local":
        assert text.strip()
    else:
        # The template's turns reached the upstream as turns: its echo names the last one,
        # and no template marker went with it.
        assert text == "echo: Name a colour."
        sent = json.dumps(fakes[provider].received[-1].body)
        assert "Answer in one word." in sent and "<|" not in sent and "[INST]" not in sent
    row = ledger_rows(bedrock_gateway, [request_id(resp)])[request_id(resp)]
    assert (row.surface, row.status, row.model, row.stream) == ("bedrock_invoke", "ok",
                                                                MODEL[provider], False)
    assert row.input_tokens > 0 and row.output_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_invoke_with_response_stream(runtime, bedrock_gateway, family, provider):
    resp, chunks = invoke_stream(runtime, MODEL[provider], body(family))
    text = streamed_text(family, chunks)
    assert text.strip() if provider == "local" else text == "echo: Name a colour."
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["inputTokenCount"] > 0 and metrics["outputTokenCount"] > 0
    if family == "anthropic":
        assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop"
        assert chunks[0]["message"]["id"].startswith("msg_bdrk_")
    if family == "nova":
        assert "messageStart" in chunks[0] and "metadata" in chunks[-1]
    assert resp["contentType"] == "application/json"
    assert resp["ResponseMetadata"]["RequestId"] == request_id(resp)
    row = ledger_rows(bedrock_gateway, [request_id(resp)])[request_id(resp)]
    assert (row.surface, row.status, row.stream) == ("bedrock_invoke", "ok", True)
    assert (row.input_tokens, row.output_tokens) == (metrics["inputTokenCount"],
                                                     metrics["outputTokenCount"])


TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock", "gemini"])
def test_anthropic_body_tool_calls(runtime, fakes, provider):
    fakes[provider].queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="t1")]),
                          Reply(tool_calls=[ToolCall("get_weather", {"city": "Kyiv"}, id="t2")],
                                chunk_size=2))
    payload = {**body("anthropic"), "tools": [TOOL], "tool_choice": {"type": "any"}}
    _, answer = invoke(runtime, MODEL[provider], payload)
    use = next(b for b in answer["content"] if b["type"] == "tool_use")
    assert (use["name"], use["input"], answer["stop_reason"]) == ("get_weather", {"city": "Paris"},
                                                                  "tool_use")
    _, chunks = invoke_stream(runtime, MODEL[provider], payload)
    start = next(c for c in chunks if c["type"] == "content_block_start"
                 and c["content_block"]["type"] == "tool_use")
    args = "".join(c["delta"]["partial_json"] for c in chunks
                   if c["type"] == "content_block_delta" and c["delta"]["type"] == "input_json_delta")
    assert start["content_block"]["name"] == "get_weather" and json.loads(args) == {"city": "Kyiv"}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock", "gemini"])
def test_nova_body_tool_calls(runtime, fakes, provider):
    fakes[provider].queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="t1")]))
    payload = {**body("nova"), "toolConfig": {"tools": [{"toolSpec": {
        "name": "get_weather", "inputSchema": {"json": TOOL["input_schema"]}}}],
        "toolChoice": {"any": {}}}}
    _, answer = invoke(runtime, MODEL[provider], payload)
    use = next(b["toolUse"] for b in answer["output"]["message"]["content"] if "toolUse" in b)
    assert (use["name"], use["input"], answer["stopReason"]) == ("get_weather", {"city": "Oslo"},
                                                                 "tool_use")


def test_anthropic_fields_reach_an_anthropic_upstream(runtime, fakes):
    payload = {**body("anthropic"), "top_k": 7, "stop_sequences": ["END"]}
    invoke(runtime, MODEL["anthropic"], payload)
    sent = fakes["anthropic"].received[-1].body
    assert (sent["top_k"], sent["stop_sequences"], sent["model"]) == (7, ["END"], "claude-sonnet-4-5")
    assert "anthropic_version" not in sent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_anthropic_sdk_bedrock_client(bedrock_gateway, aws_pair, provider):
    """The anthropic SDK's own Bedrock client (InvokeModel with the Messages body)."""
    sdk = anthropic.AnthropicBedrock(aws_access_key=aws_pair[0], aws_secret_key=aws_pair[1],
                                     aws_region="us-east-1", base_url=bedrock_gateway.url,
                                     max_retries=0)
    msg = sdk.messages.create(model=MODEL[provider], max_tokens=16,
                              messages=[{"role": "user", "content": "Name a colour."}])
    with sdk.messages.stream(model=MODEL[provider], max_tokens=16,
                             messages=[{"role": "user", "content": "Name a colour."}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    for text, usage in ((msg.content[0].text, msg.usage), (streamed, final.usage)):
        assert text.strip() if provider == "local" else text == "echo: Name a colour."
        assert usage.input_tokens > 0 and usage.output_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="no-such-model", max_tokens=5,
                            messages=[{"role": "user", "content": "x"}])


def test_arn_from_the_control_plane_is_a_model_id(runtime):
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL['openai']}"
    _, answer = invoke(runtime, arn, body("mistral"))
    assert answer["outputs"][0]["text"] == "echo: Name a colour."


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("status, exception", [
    (400, "ValidationException"), (429, "ThrottlingException"),
    (500, "InternalServerException"), (503, "ServiceUnavailableException")])
def test_upstream_errors_in_aws_shape(runtime, fakes, status, exception):
    fakes["openai"].queue(Reply(error_status=status, error_message="scripted"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        invoke(runtime, MODEL["openai"], body("nova"))
    assert e.value.response["Error"]["Code"] == exception
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_midstream_failure_is_a_stream_error(runtime, bedrock_gateway, fakes):
    fakes["anthropic"].queue(Reply(text="a long answer that breaks", chunk_size=2,
                                   truncate_after=4))
    resp = runtime.invoke_model_with_response_stream(modelId=MODEL["anthropic"],
                                                     body=json.dumps(body("anthropic")))
    with pytest.raises(botocore.exceptions.EventStreamError):
        list(resp["body"])
    row = ledger_rows(bedrock_gateway, [request_id(resp)])[request_id(resp)]
    assert (row.surface, row.status) == ("bedrock_invoke", "upstream_failed_mid_stream")


@pytest.mark.parametrize("payload, says", [
    ({"foo": "bar"}, "InvokeModel bodies are recognised by their fields"),
    ({"anthropic_version": "bedrock-2023-05-31", "messages": []}, "max_tokens"),
    ({"prompt": "x", "max_gen_len": "many"}, "max_gen_len"),
])
def test_bad_bodies_are_validation_exceptions(runtime, payload, says):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        invoke(runtime, MODEL["openai"], payload)
    assert says in e.value.response["Error"]["Message"]


def test_not_json_is_a_validation_exception(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        runtime.invoke_model(modelId=MODEL["openai"], body=b"not json")
    assert "not valid JSON" in e.value.response["Error"]["Message"]


def test_unknown_model_is_resource_not_found(runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as e:
        invoke(runtime, "no-such-model", body("llama"))
    assert "no-such-model" in e.value.response["Error"]["Message"]


def test_guardrails_are_refused_by_name(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        invoke(runtime, MODEL["openai"], body("nova"), guardrailIdentifier="gr-1",
               guardrailVersion="1")
    assert "Guardrails are not available" in e.value.response["Error"]["Message"]
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        invoke(runtime, MODEL["openai"], body("nova"), serviceTier="priority")
    assert "serviceTier" in e.value.response["Error"]["Message"]


def test_embeddings_bodies_do_not_stream(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        invoke_stream(runtime, MODEL["local"], {"inputText": "hi"})
    assert "does not stream" in e.value.response["Error"]["Message"]


def test_wrong_secret_and_unknown_key(bedrock_gateway, aws_pair):
    bad = client(bedrock_gateway, (aws_pair[0], "not-the-secret-0000000000000000000000000"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        invoke(bad, MODEL["openai"], body("llama"))
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    unknown = client(bedrock_gateway, ("AKMMNOTAREALKEY00000", "whatever"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        invoke(unknown, MODEL["openai"], body("llama"))
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_count_tokens_and_apply_guardrail_say_they_are_not_here(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        runtime.count_tokens(modelId=MODEL["openai"], input={"converse": {
            "messages": [{"role": "user", "content": [{"text": "hi"}]}]}})
    assert "CountTokens is not available" in e.value.response["Error"]["Message"]
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        runtime.apply_guardrail(guardrailIdentifier="g", guardrailVersion="1", source="INPUT",
                                content=[{"text": {"text": "hi"}}])
    assert "ApplyGuardrail is not available" in e.value.response["Error"]["Message"]


def test_unknown_operations_have_a_message(runtime):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        runtime.list_async_invokes()
    error = e.value.response["Error"]
    assert error["Code"] == "UnknownOperationException" and "No operation for GET" in error["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        runtime.start_async_invoke(modelId=MODEL["openai"], modelInput={"prompt": "x"},
                                   outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://b/k"}})
    assert e.value.response["Error"]["Code"] == "UnknownOperationException"
    assert e.value.response["Error"]["Message"]


def test_converse_guardrail_config_is_a_validation_exception_naming_guardrails(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as e:
        runtime.converse(modelId=MODEL["bedrock"], guardrailConfig={
            "guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
            messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert "Guardrails ('guardrailConfig') are not available" in e.value.response["Error"]["Message"]
    with pytest.raises(runtime.exceptions.ValidationException):
        runtime.converse_stream(modelId=MODEL["openai"], guardrailConfig={
            "guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
            messages=[{"role": "user", "content": [{"text": "hi"}]}])


# ---- the ledger -----------------------------------------------------------------------


def test_every_admitted_request_settles_exactly_once(bedrock_gateway, fakes):
    """However an InvokeModel request ends — answered, streamed, refused by the upstream,
    failed mid-stream, abandoned by its client, embeddings — it leaves one ledger row; a
    request refused before it named a model leaves none."""
    pair = new_aws_pair(bedrock_gateway, "ledger-once")
    runtime = client(bedrock_gateway, pair)
    ids = {}
    resp, _ = invoke(runtime, MODEL["openai"], body("llama"))
    ids[request_id(resp)] = ("ok", False)
    resp, _ = invoke_stream(runtime, MODEL["gemini"], body("nova"))
    ids[request_id(resp)] = ("ok", True)
    resp, _ = invoke(runtime, MODEL["local"], {"inputText": "embed me"})
    ids[request_id(resp)] = ("ok", False)
    fakes["anthropic"].queue(Reply(error_status=500, error_message="down"))
    with pytest.raises(runtime.exceptions.InternalServerException) as e:
        invoke(runtime, MODEL["anthropic"], body("anthropic"))
    ids[e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-request-id"]] = ("error", False)
    fakes["bedrock"].queue(Reply(text="x" * 40, chunk_size=2, truncate_after=5))
    resp = runtime.invoke_model_with_response_stream(modelId=MODEL["bedrock"],
                                                     body=json.dumps(body("mistral")))
    with pytest.raises(botocore.exceptions.EventStreamError):
        list(resp["body"])
    ids[request_id(resp)] = ("upstream_failed_mid_stream", True)
    fakes["openai"].queue(Reply(text="slow " * 50, chunk_size=5, event_delay=0.05))
    resp = runtime.invoke_model_with_response_stream(modelId=MODEL["openai"],
                                                     body=json.dumps(body("anthropic")))
    next(iter(resp["body"]))
    resp["body"].close()  # the client goes away mid-stream
    ids[request_id(resp)] = ("client_disconnected", True)
    for refused in ({"no": "family"}, body("llama")):
        with pytest.raises(botocore.exceptions.ClientError):
            invoke(runtime, "no-such-model" if "prompt" in refused else MODEL["openai"], refused)

    rows = ledger_rows(bedrock_gateway, list(ids))
    for rid, (status, stream) in ids.items():
        assert (rows[rid].surface, rows[rid].status, rows[rid].stream) == (
            "bedrock_invoke", status, stream), rid
    deadline = time.monotonic() + 3
    while len(customer_rows(bedrock_gateway, "ledger-once")) < len(ids):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # nothing more arrives late
    assert sorted(r.request_id for r in customer_rows(bedrock_gateway, "ledger-once")) == sorted(ids)


def test_bedrock_api_keys_and_no_key(bedrock_gateway):
    """A Bedrock API key (Authorization: Bearer) is the gateway's own key; without one the
    refusal is AWS-shaped."""
    url = f"{bedrock_gateway.url}/model/{MODEL['openai']}/invoke"
    ok = httpx.post(url, json=body("mistral"),
                    headers={"authorization": f"Bearer {bedrock_gateway.key}"})
    assert ok.status_code == 200 and ok.json()["outputs"][0]["text"] == "echo: Name a colour."
    refused = httpx.post(url, json=body("mistral"))
    assert refused.status_code == 401 and refused.json()["message"].startswith("Missing API key")
    assert refused.headers["x-amzn-errortype"] == "UnrecognizedClientException"
