"""The Amazon Bedrock Converse wire format (``POST /model/{modelId}/converse`` and
``/converse-stream``), both directions.

Differences from the other dialects' surface, all because Converse keeps the model id in
the URL path and streams AWS event-stream frames instead of SSE:

- ``decode_request(data, model_id, *, stream=False)``: the model id and streaming come
  from the path; ``encode_request`` returns the body only.
- ``decode_response(data, model="")``: the reply names no model.
- ``encode_response(resp, model, *, latency_ms=0)``: ``metrics.latencyMs`` is required.
- ``StreamEncoder`` yields event-stream bytes; ``StreamDecoder.feed(event_type, payload)``
  takes decoded event-stream messages (``feed_message(msg)`` does the header reading).
- ``encode_error`` is paired with ``error_headers(err)`` (``x-amzn-errortype``);
  ``decode_error(status, body, headers=None)``.
"""

from .count import decode_token_count, encode_count_tokens
from .errors import decode_error, encode_error, error_headers
from .request import decode_request, encode_request
from .response import decode_response, encode_response
from .stream import StreamDecoder, StreamEncoder

MEDIA_TYPE_STREAM = "application/vnd.amazon.eventstream"

__all__ = [
    "decode_request", "encode_request", "decode_response", "encode_response",
    "StreamEncoder", "StreamDecoder", "encode_error", "decode_error", "error_headers",
    "MEDIA_TYPE_STREAM", "encode_count_tokens", "decode_token_count",
]
