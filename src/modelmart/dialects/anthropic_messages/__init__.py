"""The Anthropic Messages wire format (``POST /v1/messages``), both directions."""

from .count import decode_count_request, decode_token_count, encode_token_count
from .errors import decode_error, encode_error
from .request import decode_request, encode_request
from .response import decode_response, encode_response
from .stream import StreamDecoder, StreamEncoder

__all__ = [
    "decode_request", "encode_request", "decode_response", "encode_response",
    "StreamEncoder", "StreamDecoder", "encode_error", "decode_error",
    "decode_count_request", "decode_token_count", "encode_token_count",
]
