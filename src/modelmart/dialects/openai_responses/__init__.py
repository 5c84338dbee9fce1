"""The OpenAI Responses API (``POST /v1/responses``) as a client surface: requests from
clients, ``response`` objects and the named SSE event stream back, and the same error
bodies as Chat Completions.

Stateless: nothing is stored, so ``previous_response_id`` and friends are refused. Not
yet an upstream dialect: ``encode_request``, ``decode_response`` and ``StreamDecoder``
raise ``InvalidRequest``.

``encode_response`` and ``StreamEncoder`` take the decoded request as ``request=`` to fill
the settings a response object echoes (tools, tool_choice, instructions, metadata ...).
"""

from modelmart.dialects.openai_chat.errors import decode_error, encode_error

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
