"""The OpenAI Embeddings dialect: decoding client requests (and refusing bad ones with the
parameter named), encoding responses as floats or base64 float32, and the upstream
direction."""

from __future__ import annotations

import base64
import struct

import pytest

from modelmart.core.embeddings import EmbeddingRequest, EmbeddingResponse, estimate_tokens
from modelmart.core.errors import InvalidRequest, NotFound, RateLimited, UpstreamError
from modelmart.dialects import openai_chat
from modelmart.dialects import openai_embeddings as wire


def decode(**body):
    return wire.decode_request({"model": "m", **body})


# ---- decode_request --------------------------------------------------------------------


def test_a_string_is_one_input():
    req = decode(input="hello")
    assert req == EmbeddingRequest(model="m", inputs=["hello"])


def test_a_list_of_strings_keeps_its_order_and_the_options():
    req = decode(input=["a", "b", "c"], encoding_format="base64", dimensions=256, user="u-1")
    assert req.inputs == ["a", "b", "c"]
    assert (req.encoding_format, req.dimensions, req.user) == ("base64", 256, "u-1")


def test_unknown_fields_go_to_extra():
    req = decode(input="x", input_type="query", truncate="END")
    assert req.extra == {"input_type": "query", "truncate": "END"}


def test_defaults():
    req = decode(input="x", encoding_format=None, dimensions=None)
    assert (req.encoding_format, req.dimensions, req.user, req.extra) == ("float", None, None, {})


@pytest.mark.parametrize("body, param, words", [
    ({}, "model", "model"),
    ({"model": ""}, "model", "empty string"),
    ({"model": 7, "input": "x"}, "model", "a string"),
    ({"model": "m"}, "input", "Missing required parameter: 'input'"),
    ({"model": "m", "input": None}, "input", "Missing required parameter"),
    ({"model": "m", "input": ""}, "input", "empty string"),
    ({"model": "m", "input": []}, "input", "empty array"),
    ({"model": "m", "input": ["ok", ""]}, "input", "input[1]"),
    ({"model": "m", "input": 42}, "input", "expected an array, but got an integer"),
    ({"model": "m", "input": {"text": "x"}}, "input", "expected an array, but got an object"),
    ({"model": "m", "input": ["ok", 3]}, "input[1]", "expected a string, but got an integer"),
    ({"model": "m", "input": ["ok", None]}, "input[1]", "expected a string, but got null"),
    ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format", "'float', 'base64'"),
    ({"model": "m", "input": "x", "dimensions": 0}, "dimensions", "minimum of 1"),
    ({"model": "m", "input": "x", "dimensions": "256"}, "dimensions", "an integer"),
    ({"model": "m", "input": "x", "dimensions": True}, "dimensions", "an integer"),
    ({"model": "m", "input": "x", "user": 5}, "user", "a string"),
])
def test_bad_requests_name_the_parameter(body, param, words):
    with pytest.raises(InvalidRequest) as e:
        wire.decode_request(body)
    assert e.value.status == 400
    assert e.value.param == param
    assert words in e.value.message


@pytest.mark.parametrize("tokens, inputs", [([1, 2, 3], [[1, 2, 3]]),
                                            ([[1, 2], [3]], [[1, 2], [3]])])
def test_token_arrays_are_decoded_as_such(tokens, inputs):
    req = decode(input=tokens)
    assert req.token_ids and req.inputs == inputs
    assert wire.encode_request(req, "m")["input"] == inputs
    assert not decode(input=["a", "b"]).token_ids


@pytest.mark.parametrize("tokens, param", [(["text", [1, 2]], "input[1]"),
                                           ([[1, 2], "text"], "input"), ([[1, 2], []], "input"),
                                           ([[1, -2]], "input"), ([[1, True]], "input")])
def test_mixed_or_bad_token_arrays_are_refused(tokens, param):
    with pytest.raises(InvalidRequest) as e:
        decode(input=tokens)
    assert e.value.param == param


def test_too_many_inputs():
    assert len(decode(input=["x"] * wire.MAX_INPUTS).inputs) == wire.MAX_INPUTS
    with pytest.raises(InvalidRequest) as e:
        decode(input=["x"] * (wire.MAX_INPUTS + 1))
    assert e.value.param == "input" and str(wire.MAX_INPUTS) in e.value.message


def test_the_body_must_be_an_object():
    with pytest.raises(InvalidRequest):
        wire.decode_request(["input"])


# ---- encode_response -------------------------------------------------------------------


RESP = EmbeddingResponse(model="upstream-id", vectors=[[0.5, -0.25], [1.0, 0.0]], input_tokens=9)


def test_encode_floats():
    assert wire.encode_response(RESP, "public-id") == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                 {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
        "model": "public-id",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }


def test_encode_base64_is_little_endian_float32():
    body = wire.encode_response(RESP, "public-id", encoding_format="base64")
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert raw == struct.pack("<2f", 0.5, -0.25)
    assert body["data"][1]["embedding"] == base64.b64encode(struct.pack("<ff", 1.0, 0.0)).decode()


def test_base64_rounds_to_float32():
    value = 0.1  # not a float32
    (packed,) = struct.unpack("<f", struct.pack("<f", value))
    assert wire.unpack_base64(wire.pack_base64([value])) == [packed]


# ---- the upstream direction ------------------------------------------------------------


def test_encode_request_for_an_upstream():
    req = EmbeddingRequest(model="public", inputs=["a", "b"], dimensions=64,
                           encoding_format="base64", user="u", extra={"input_type": "query"})
    assert wire.encode_request(req, "text-embedding-3-small") == {
        "input_type": "query", "model": "text-embedding-3-small", "input": ["a", "b"],
        "encoding_format": "base64", "dimensions": 64, "user": "u"}
    minimal = wire.encode_request(EmbeddingRequest(model="p", inputs=["a"]), "up")
    assert minimal == {"model": "up", "input": ["a"], "encoding_format": "float"}


def test_encode_request_drops_unsupported_params():
    req = EmbeddingRequest(model="p", inputs=["a"], dimensions=8, user="u")
    body = wire.encode_request(req, "up", drop=["encoding_format", "dimensions"])
    assert body == {"model": "up", "input": ["a"], "user": "u"}


def test_round_trip_through_the_dialect():
    req = EmbeddingRequest(model="m", inputs=["a", "b"], dimensions=3, encoding_format="base64",
                           user="u", extra={"x": 1})
    assert wire.decode_request(wire.encode_request(req, "m")) == req
    resp = EmbeddingResponse(model="m", vectors=[[0.5, 0.25], [-1.0, 2.0]], input_tokens=4)
    for fmt in ("float", "base64"):
        assert wire.decode_response(wire.encode_response(resp, "m", encoding_format=fmt)) == resp


def test_decode_response_floats_and_base64():
    data = {"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 1, -2.0]},
                     {"object": "embedding", "index": 1,
                      "embedding": base64.b64encode(struct.pack("<2f", 0.25, -0.5)).decode()}],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    resp = wire.decode_response(data)
    assert resp == EmbeddingResponse("text-embedding-3-small", [[0.5, 1.0, -2.0], [0.25, -0.5]], 5)
    assert all(isinstance(x, float) for x in resp.vectors[0])


def test_decode_response_puts_vectors_in_index_order():
    data = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],
            "usage": {"prompt_tokens": 2}}
    assert wire.decode_response(data).vectors == [[1.0], [2.0]]


def test_decode_response_without_usage_is_marked_estimated():
    resp = wire.decode_response({"data": [{"index": 0, "embedding": [1.0]}]})
    assert (resp.input_tokens, resp.estimated) == (0, True)
    resp = wire.decode_response({"data": [{"index": 0, "embedding": [1.0]}], "usage": None})
    assert resp.estimated


@pytest.mark.parametrize("data", [
    None,
    [],
    {"data": "nope"},
    {"data": [{"index": 0}]},
    {"data": [{"index": 0, "embedding": "not base64!"}]},
    {"data": [{"index": 0, "embedding": base64.b64encode(b"abc").decode()}]},  # 3 bytes
    {"data": [{"index": 0, "embedding": ["1"]}]},
    {"data": [{"index": 0, "embedding": [True]}]},
    {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]},
    {"data": [{"index": 5, "embedding": [1.0]}]},
    {"data": ["x"]},
])
def test_malformed_upstream_replies(data):
    with pytest.raises(UpstreamError) as e:
        wire.decode_response(data)
    assert e.value.status == 502 and "malformed embeddings reply" in e.value.message


def test_errors_are_openai_chats():
    assert wire.encode_error is openai_chat.encode_error
    assert wire.decode_error is openai_chat.decode_error
    status, body = wire.encode_error(InvalidRequest("bad", param="input"))
    assert (status, body["error"]["type"], body["error"]["param"]) == (400, "invalid_request_error", "input")
    assert isinstance(wire.decode_error(404, b'{"error": {"message": "no model"}}'), NotFound)
    assert isinstance(wire.decode_error(429, b'{"error": {"message": "slow"}}'), RateLimited)


def test_estimate_tokens_is_four_characters_a_token_per_input():
    assert estimate_tokens(["abcd", "abcde", "a"]) == 1 + 2 + 1
    assert estimate_tokens([]) == 0
