"""Google's Gemini API wire format (``generateContent`` and ``streamGenerateContent``),
both ways: requests from Gemini clients and to Gemini upstreams, whole and streamed
responses, and Google's error bodies.

Unlike the other dialects, the model id (and whether to stream) is part of the URL, so
``decode_request(data, model_id, *, stream=False)`` takes them as arguments, and
``encode_request`` leaves them out of the body.
"""

from .errors import decode_error, encode_error
from .request import decode_request, encode_request
from .response import decode_response, encode_response
from .stream import StreamDecoder, StreamEncoder

__all__ = [
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "StreamEncoder",
    "StreamDecoder",
    "encode_error",
    "decode_error",
]
