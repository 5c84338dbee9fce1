"""The OpenAI Embeddings wire format (``POST /v1/embeddings``), both ways: requests from
OpenAI clients and to OpenAI(-compatible) upstreams, responses (float arrays or base64 of
little-endian float32, as OpenAI sends them), and OpenAI's error bodies."""

from modelmart.dialects.openai_chat.errors import decode_error, encode_error

from .request import MAX_INPUTS, decode_request, encode_request
from .response import decode_response, encode_response, pack_base64, unpack_base64

__all__ = [
    "MAX_INPUTS",
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "encode_error",
    "decode_error",
    "pack_base64",
    "unpack_base64",
]
