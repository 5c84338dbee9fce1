"""InvokeModel bodies: which family a body is, what it decodes to, how answers and streams
are encoded, and the embeddings bodies both ways."""

from __future__ import annotations

import base64
import json

import pytest

from modelmart.core.embeddings import EmbeddingResponse
from modelmart.core.errors import InvalidRequest, UpstreamError
from modelmart.core.types import (
    BlockStart, BlockStop, MessageEnd, MessageStart, Response, TextBlock, TextDelta,
    ToolArgsDelta, ToolUseBlock, Usage,
)
from modelmart.dialects import bedrock_invoke as wire
from modelmart.dialects.bedrock_invoke import embeddings
from modelmart.dialects.bedrock_invoke.prompt import parse_prompt
from modelmart.dialects.eventstream import EventStreamDecoder

ANTHROPIC = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
             "messages": [{"role": "user", "content": "hi"}]}
NOVA = {"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}


@pytest.mark.parametrize("body, family", [
    (ANTHROPIC, "anthropic"),
    (NOVA, "nova"),
    ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "nova"),
    ({"prompt": "hi", "max_gen_len": 5}, "llama"),
    ({"prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>hi<|eot_id|>"}, "llama"),
    ({"prompt": "<s>[INST] hi [/INST]", "max_tokens": 5}, "mistral"),
    ({"prompt": "hi"}, "mistral"),
    ({"inputText": "hi"}, "titan_embed"),
    ({"inputText": "hi", "textGenerationConfig": {}}, "titan_text"),
    ({"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": {}}, "nova_embed"),
    ({"texts": ["a"], "input_type": "search_document"}, "cohere_embed"),
])
def test_family_by_shape(body, family):
    assert wire.family_of(body).name == family


@pytest.mark.parametrize("body, says", [
    ({"foo": 1}, "fits no model family"),
    ([1, 2], "must be a JSON object"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
     "anthropic_version"),
    ({"messages": [{"role": "user", "content": "x"}]}, "chat-completions"),
    ({"prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 5}, "text completions"),
])
def test_unknown_shapes_say_what_fits(body, says):
    with pytest.raises(InvalidRequest) as e:
        wire.decode_request(body, "m")
    assert says in e.value.message
    if "fits no" in says:
        assert "anthropic_version" in e.value.message and "inputText" in e.value.message


def test_anthropic_body():
    body = {**ANTHROPIC, "system": "be brief", "temperature": 0.5, "top_k": 3,
            "stop_sequences": ["x"], "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}}
    decoded = wire.decode_request(body, "claude", stream=True)
    req = decoded.request
    assert decoded.family.name == "anthropic"
    assert (req.model, req.stream, req.max_tokens, req.system) == ("claude", True, 20, "be brief")
    assert (req.temperature, req.top_k, req.stop) == (0.5, 3, ["x"])
    assert req.tools[0].name == "f" and req.tool_choice.type == "any"
    # Anthropic's own fields stay Anthropic's, for Anthropic upstreams.
    assert req.source == "anthropic" and req.extra == {"thinking": body["thinking"]}


@pytest.mark.parametrize("extra, field", [({"model": "x"}, "model"), ({"stream": True}, "stream"),
                                          ({"anthropic_version": 2023}, "anthropic_version")])
def test_anthropic_body_refuses_what_bedrock_refuses(extra, field):
    with pytest.raises(InvalidRequest) as e:
        wire.decode_request({**ANTHROPIC, **extra}, "m")
    assert e.value.param == field


def test_nova_body_both_spellings():
    nova1 = {**NOVA, "system": [{"text": "sys"}],
             "inferenceConfig": {"max_new_tokens": 7, "top_p": 0.5, "top_k": 4, "temperature": 0.2,
                                 "stopSequences": ["END"]}}
    nova2 = {**NOVA, "system": [{"text": "sys"}],
             "inferenceConfig": {"maxTokens": 7, "topP": 0.5, "topK": 4, "temperature": 0.2,
                                 "stopSequences": ["END"]}}
    for body in (nova1, nova2):
        req = wire.decode_request(body, "nova").request
        assert (req.max_tokens, req.top_p, req.top_k, req.temperature, req.stop, req.system) == (
            7, 0.5, 4, 0.2, ["END"], "sys")
        assert req.source == "bedrock"
    reasoning = {"type": "enabled", "maxReasoningEffort": "low"}
    req = wire.decode_request({**NOVA, "inferenceConfig": {"reasoningConfig": reasoning}}, "n").request
    assert req.extra == {"reasoningConfig": reasoning}  # to Bedrock's additional fields


@pytest.mark.parametrize("body, field", [
    ({**NOVA, "inferenceConfig": {"maxTokens": 5, "max_new_tokens": 5}}, "inferenceConfig.max_new_tokens"),
    ({**NOVA, "inferenceConfig": {"frequency": 1}}, "inferenceConfig.frequency"),
    ({**NOVA, "guardrailConfig": {}}, "guardrailConfig"),
    ({**NOVA, "schemaVersion": "messages-v2"}, "schemaVersion"),
    ({**NOVA, "inferenceConfig": {"reasoningConfig": {"type": [[["deep"]]]}}},
     "inferenceConfig.reasoningConfig.type"),
])
def test_nova_body_refusals(body, field):
    with pytest.raises(InvalidRequest) as e:
        wire.decode_request(body, "nova")
    assert e.value.param == field


def test_nova_tools_and_images():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
    body = {"messages": [{"role": "user", "content": [
        {"text": "look"}, {"image": {"format": "png", "source": {"bytes": png}}}]}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"any": {}}}}
    req = wire.decode_request(body, "nova").request
    assert req.needs_images() and req.tools[0].name == "f" and req.tool_choice.type == "any"


LLAMA3 = ("<|begin_of_text|>\n<|start_header_id|>system<|end_header_id|>Be brief.<|eot_id|>\n"
          "<|start_header_id|>user<|end_header_id|>Hi<|eot_id|>\n"
          "<|start_header_id|>assistant<|end_header_id|>Hello!<|eot_id|>\n"
          "<|start_header_id|>user<|end_header_id|>Name a colour.<|eot_id|>\n"
          "<|start_header_id|>assistant<|end_header_id|>\n\n")
LLAMA4 = ("<|begin_of_text|><|header_start|>system<|header_end|>Be brief.<|eot|>"
          "<|header_start|>user<|header_end|>Hi<|eot|>"
          "<|header_start|>assistant<|header_end|>Hello!<|eot|>"
          "<|header_start|>user<|header_end|>Name a colour.<|eot|>"
          "<|header_start|>assistant<|header_end|>")
MISTRAL = "<s>[INST] Hi [/INST] Hello!</s>[INST] Name a colour. [/INST]"
LLAMA2 = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Name a colour. [/INST]"


def _turns(messages):
    return [(m.role, " ".join(b.text for b in m.content)) for m in messages]


@pytest.mark.parametrize("prompt, system", [(LLAMA3, "Be brief."), (LLAMA4, "Be brief."),
                                            (MISTRAL, None), (LLAMA2, "Be brief.")])
def test_templates_read_back_into_turns(prompt, system):
    got_system, messages = parse_prompt(prompt)
    assert got_system == system
    assert _turns(messages) == [("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a colour.")]


@pytest.mark.parametrize("prompt", [
    "Just a question?",
    "Text before <|start_header_id|>user<|end_header_id|>hi<|eot_id|>",
    "<|start_header_id|>robot<|end_header_id|>hi<|eot_id|>",
    "preface [INST] hi [/INST]",
    "<|start_header_id|>user<|end_header_id|>hi <|start_header_id|>assistant<|end_header_id|>x<|eot_id|>",
])
def test_other_prompts_are_one_user_turn_as_sent(prompt):
    system, messages = parse_prompt(prompt)
    assert system is None and _turns(messages) == [("user", prompt)]


def test_titan_text_labelled_turns_and_settings():
    req = wire.decode_request({
        "inputText": "Be brief.\n\nUser: Hi\n\nBot: Hello!\n\nUser: Name a colour.\n\nBot:",
        "textGenerationConfig": {"maxTokenCount": 9, "topP": 0.5, "stopSequences": ["User:"]}},
        "m").request
    assert req.system == "Be brief." and (req.max_tokens, req.top_p, req.stop) == (9, 0.5, ["User:"])
    assert _turns(req.messages) == [("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a colour.")]
    # Labels are read for Titan only: elsewhere "User:" is just text.
    assert _turns(parse_prompt("User: hi\n\nBot:")[1]) == [("user", "User: hi\n\nBot:")]


def test_llama_and_mistral_settings():
    req = wire.decode_request({"prompt": LLAMA3, "max_gen_len": 9, "temperature": 0.3,
                               "top_p": 0.8}, "m").request
    assert (req.max_tokens, req.temperature, req.top_p, req.system) == (9, 0.3, 0.8, "Be brief.")
    req = wire.decode_request({"prompt": MISTRAL, "max_tokens": 9, "top_k": 5, "stop": ["."]},
                              "m").request
    assert (req.max_tokens, req.top_k, req.stop) == (9, 5, ["."])
    with pytest.raises(InvalidRequest) as e:
        wire.decode_request({"prompt": "x", "max_gen_len": 9, "top_k": 2}, "m")
    assert e.value.param == "top_k"  # Llama takes no top_k


RESP = Response(id="msg_bdrk_1", model="m", content=[TextBlock("Hello"), TextBlock(" there")],
                stop_reason="max_tokens", usage=Usage(input_tokens=5, output_tokens=2,
                                                      cache_read_tokens=3))


def test_answers_in_each_family_shape():
    fam = wire.FAMILIES
    assert fam["anthropic"].encode_response(RESP, "m")["content"][0] == {"type": "text", "text": "Hello"}
    nova = fam["nova"].encode_response(RESP, "m")
    assert nova["stopReason"] == "max_tokens" and nova["usage"]["cacheReadInputTokenCount"] == 3
    assert nova["output"]["message"]["content"] == [{"text": "Hello"}, {"text": " there"}]
    assert fam["llama"].encode_response(RESP, "m") == {
        "generation": "Hello there", "prompt_token_count": 8, "generation_token_count": 2,
        "stop_reason": "length"}
    assert fam["mistral"].encode_response(RESP, "m") == {
        "outputs": [{"text": "Hello there", "stop_reason": "length"}]}
    assert fam["titan_text"].encode_response(RESP, "m") == {
        "inputTextTokenCount": 8,
        "results": [{"tokenCount": 2, "outputText": "Hello there", "completionReason": "LENGTH"}]}


def _chunks(data: bytes) -> list[dict]:
    out = []
    for msg in EventStreamDecoder().feed(data):
        assert msg.headers[":event-type"] == "chunk"
        out.append(json.loads(base64.b64decode(json.loads(msg.payload)["bytes"])))
    return out


EVENTS = [MessageStart("msg_1", "m", Usage(input_tokens=4)), BlockStart(0, TextBlock("")),
          TextDelta(0, "Hel"), TextDelta(0, "lo"), BlockStop(0),
          BlockStart(1, ToolUseBlock("tu_1", "f", {})), ToolArgsDelta(1, '{"a":'),
          ToolArgsDelta(1, "1}"),
          MessageEnd("tool_use", Usage(input_tokens=4, output_tokens=6))]


def _stream(family: str) -> list[dict]:
    encoder = wire.FAMILIES[family].StreamEncoder("m")
    return _chunks(b"".join(encoder.event(ev) for ev in EVENTS) + encoder.end())


def test_anthropic_stream_objects():
    objs = _stream("anthropic")
    assert [o["type"] for o in objs] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert objs[0]["message"]["id"] == "msg_1" and objs[0]["message"]["usage"]["input_tokens"] == 4
    assert objs[5]["content_block"] == {"type": "tool_use", "id": "tu_1", "name": "f", "input": {}}
    assert objs[-2]["delta"]["stop_reason"] == "tool_use"
    metrics = objs[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (4, 6)
    assert {"invocationLatency", "firstByteLatency"} <= set(metrics)


def test_nova_stream_objects():
    objs = _stream("nova")
    assert [next(iter(o)) for o in objs] == [
        "messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop",
        "contentBlockStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop",
        "messageStop", "metadata"]
    assert objs[4]["contentBlockStart"] == {"start": {"toolUse": {"toolUseId": "tu_1", "name": "f"}},
                                            "contentBlockIndex": 1}
    assert objs[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert objs[-1]["metadata"]["usage"]["outputTokens"] == 6
    assert objs[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 6


def test_prompt_streams_carry_text_only():
    llama = _stream("llama")
    assert "".join(o["generation"] for o in llama) == "Hello"
    assert llama[0]["prompt_token_count"] == 4 and llama[1]["prompt_token_count"] is None
    assert llama[-1]["stop_reason"] == "stop" and llama[-1]["generation_token_count"] == 6
    mistral = _stream("mistral")
    assert "".join(o["outputs"][0]["text"] for o in mistral) == "Hello"
    assert mistral[-1]["outputs"][0]["stop_reason"] == "stop"
    assert "amazon-bedrock-invocationMetrics" in mistral[-1]
    titan = _stream("titan_text")
    assert "".join(o["outputText"] for o in titan) == "Hello"
    assert titan[-1]["completionReason"] == "FINISH" and titan[-1]["totalOutputTextTokenCount"] == 6


def test_stream_error_is_an_exception_message():
    encoder = wire.FAMILIES["anthropic"].StreamEncoder("m")
    data = encoder.error(UpstreamError("boom", status=503))
    (msg,) = EventStreamDecoder().feed(data)
    assert msg.headers[":message-type"] == "exception"
    assert msg.headers[":exception-type"] == "serviceUnavailableException"
    assert encoder.event(EVENTS[1]) == b""  # nothing after the error


# ---- embeddings -----------------------------------------------------------------------


def test_titan_body():
    decoded = wire.decode_request({"inputText": "hi", "dimensions": 256, "normalize": False,
                                   "embeddingTypes": ["float", "binary"]}, "m")
    assert decoded.request.inputs == ["hi"] and decoded.request.dimensions == 256
    assert decoded.options.normalize is False and decoded.options.types == ["float", "binary"]
    assert wire.decode_request({"inputText": "hi"}, "m").options.normalize is True


def test_nova_and_cohere_bodies():
    nova = wire.decode_request({"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": {
        "embeddingPurpose": "GENERIC_INDEX", "embeddingDimension": 384,
        "text": {"truncationMode": "END", "value": "hi"}}}, "m")
    assert nova.request.inputs == ["hi"] and nova.request.dimensions == 384
    cohere = wire.decode_request({"texts": ["a", "b"], "input_type": "search_query"}, "m")
    assert cohere.request.inputs == ["a", "b"]


@pytest.mark.parametrize("body, field", [
    ({"inputText": "x", "inputImage": "AAAA"}, "inputImage"),
    ({"inputText": ""}, "inputText"),
    ({"inputText": "x", "embeddingTypes": ["int8"]}, "embeddingTypes.0"),
    ({"taskType": "SEGMENTED_EMBEDDING", "singleEmbeddingParams": {}}, "taskType"),
    ({"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": {"image": {}}},
     "singleEmbeddingParams.image"),
    ({"texts": ["a"] * 97, "input_type": "search_query"}, "texts"),
    ({"texts": ["a"], "images": ["x"]}, "images"),
])
def test_embeddings_refusals(body, field):
    with pytest.raises(InvalidRequest) as e:
        wire.decode_request(body, "m")
    assert e.value.param == field


def test_embeddings_do_not_stream():
    with pytest.raises(InvalidRequest, match="does not stream"):
        wire.decode_request({"inputText": "x"}, "m", stream=True)


def test_embedding_answers():
    resp = EmbeddingResponse("m", [[3.0, 4.0]], input_tokens=2)
    titan = embeddings.encode_response(embeddings.TITAN, resp,
                                       embeddings.EmbeddingOptions(True, ["float", "binary"]),
                                       ["x"], "rid")
    assert titan == {"embedding": [0.6, 0.8], "inputTextTokenCount": 2,
                     "embeddingsByType": {"float": [0.6, 0.8], "binary": [1, 1]}}
    nova = embeddings.encode_response(embeddings.NOVA, resp, embeddings.EmbeddingOptions(), ["x"], "r")
    assert nova == {"embeddings": [{"embeddingType": "TEXT", "embedding": [3.0, 4.0]}]}
    cohere = embeddings.encode_response(embeddings.COHERE, resp, embeddings.EmbeddingOptions(),
                                        ["x"], "rid")
    assert cohere == {"id": "rid", "embeddings": [[3.0, 4.0]], "texts": ["x"],
                      "response_type": "embeddings_floats"}


@pytest.mark.parametrize("family", [embeddings.TITAN, embeddings.NOVA, embeddings.COHERE])
def test_upstream_bodies_read_back_by_the_client_decoder(family):
    """A round trip through the dialect: what the provider sends decodes as a client body."""
    texts = ["a", "b"] if family == embeddings.COHERE else ["a"]
    body = embeddings.encode_upstream(family, texts, 256)
    decoded = wire.decode_request(body, "m")
    assert decoded.family.name == family and decoded.request.inputs == texts
    assert decoded.request.dimensions == 256


def test_upstream_answers():
    assert embeddings.decode_upstream(embeddings.TITAN, {"embedding": [1, 2], "inputTextTokenCount": 3},
                                      1) == ([[1.0, 2.0]], 3)
    assert embeddings.decode_upstream(embeddings.NOVA, {"embeddings": [
        {"embeddingType": "TEXT", "embedding": [0.5]}]}, 1) == ([[0.5]], None)
    assert embeddings.decode_upstream(embeddings.COHERE, {"embeddings": {"float": [[1], [2]]}},
                                      2) == ([[1.0], [2.0]], None)
    for bad in ({"embedding": "x"}, {"embeddings": []}, [1]):
        with pytest.raises(UpstreamError):
            embeddings.decode_upstream(embeddings.TITAN if "embedding" in str(bad) else
                                       embeddings.NOVA, bad, 1)
    with pytest.raises(UpstreamError, match="expected 2"):
        embeddings.decode_upstream(embeddings.COHERE, {"embeddings": [[1]]}, 2)


@pytest.mark.parametrize("model, family", [
    ("amazon.titan-embed-text-v2:0", "titan_embed"), ("amazon.titan-embed-image-v1", "titan_embed"),
    ("amazon.nova-2-multimodal-embeddings-v1:0", "nova_embed"),
    ("us.cohere.embed-english-v3", "cohere_embed"), ("anthropic.claude-3-haiku", None),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v1", "titan_embed"),
])
def test_upstream_family_from_model_id(model, family):
    assert embeddings.upstream_family(model) == family


# ---- headers and model ids ------------------------------------------------------------


@pytest.mark.parametrize("headers, param", [
    ([(b"x-amzn-bedrock-guardrailidentifier", b"g1")], "guardrailIdentifier"),
    ([(b"x-amzn-bedrock-trace", b"ENABLED")], "trace"),
    ([(b"x-amzn-bedrock-service-tier", b"priority")], "serviceTier"),
    ([(b"x-amzn-bedrock-performanceconfig-latency", b"optimized")], "performanceConfigLatency"),
])
def test_headers_asking_for_what_is_not_done_are_refused(headers, param):
    with pytest.raises(InvalidRequest) as e:
        wire.check_headers(headers)
    assert e.value.param == param


def test_default_settings_in_headers_pass():
    wire.check_headers([(b"x-amzn-bedrock-trace", b"DISABLED"),
                        (b"x-amzn-bedrock-service-tier", b"default"),
                        (b"x-amzn-bedrock-performanceconfig-latency", b"standard")])


def test_model_ids():
    assert wire.model_id_of("nova-lite-v1%3A0") == "nova-lite-v1:0"
    assert wire.model_id_of("arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fmy-model") == "my-model"
