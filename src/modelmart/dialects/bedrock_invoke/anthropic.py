"""Anthropic Messages on Bedrock: the Messages API body with ``anthropic_version:
"bedrock-2023-05-31"`` and no ``model`` (the path names it) nor ``stream`` (the operation
says it). The answer is a Messages API message; a stream is Anthropic's event objects
(``message_start`` ... ``message_stop``, no ``ping``), each in a chunk, the last with the
invocation metrics.
"""

from __future__ import annotations

from modelmart.core.ids import new_id
from modelmart.core.types import (
    BlockStart, BlockStop, MessageEnd, MessageStart, Request, Response, StreamEvent,
)
from modelmart.dialects import anthropic_messages
from modelmart.dialects._blocks import OpenBlocks
from modelmart.dialects.anthropic_messages.response import STOP_TO_WIRE, encode_usage
from modelmart.dialects.anthropic_messages.stream import _empty_block, _wire_deltas

from . import _check as check
from .chunks import ChunkStream

VERSION = "bedrock-2023-05-31"
ID_PREFIX = "msg_bdrk_"
_NOT_IN_BODY = {
    "model": "the model is the modelId in the path",
    "stream": "streaming is the InvokeModelWithResponseStream operation",
}


def decode(data: dict, model_id: str, *, stream: bool) -> Request:
    # Bedrock documents one value; the anthropic SDK's Bedrock client sends its own API
    # version there. Either is the same body.
    check.string(data["anthropic_version"], "anthropic_version", nonempty=True)
    for key, why in _NOT_IN_BODY.items():
        if key in data:
            raise check.fail(f"extraneous key [{key}] is not permitted: {why}", key)
    body = {k: v for k, v in data.items() if k != "anthropic_version"}
    body["model"] = model_id
    req = anthropic_messages.decode_request(body)
    req.stream = stream
    # Its own fields (thinking, ...) are Anthropic's: they reach Anthropic upstreams as the
    # Anthropic surface's do.
    req.source = "anthropic"
    return req


def encode_response(resp: Response, model: str) -> dict:
    return anthropic_messages.encode_response(resp, model)


class StreamEncoder(ChunkStream):
    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__()
        self.model = model
        self._started = False
        self._wire_index: dict[int, int] = {}
        self._open = OpenBlocks()

    def objects(self, ev: StreamEvent) -> list[dict]:
        out = [] if self._started else [self._start(ev)]
        if isinstance(ev, MessageStart):
            return out
        if isinstance(ev, BlockStart):
            index = self._wire_index[ev.index] = len(self._wire_index)
            self._open.start(index)
            out.append({"type": "content_block_start", "index": index,
                        "content_block": _empty_block(ev.block)})
        elif isinstance(ev, BlockStop):
            out += self._stop(self._wire_index.get(ev.index))
        elif isinstance(ev, MessageEnd):
            out += self._end(ev)
        else:
            index = self._wire_index.get(getattr(ev, "index", -1))
            if index is not None:
                out += [{"type": "content_block_delta", "index": index, "delta": delta}
                        for delta in _wire_deltas(ev)]
        return out

    def _start(self, ev: StreamEvent) -> dict:
        self._started = True
        head = ev if isinstance(ev, MessageStart) else MessageStart(new_id(ID_PREFIX), self.model)
        usage = encode_usage(head.usage)
        return {"type": "message_start", "message": {
            "id": head.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}

    def _stop(self, index: int | None) -> list[dict]:
        if not self._open.stop(index):
            return []
        return [{"type": "content_block_stop", "index": index}]

    def _end(self, ev: MessageEnd) -> list[dict]:
        out = [o for i in list(self._open) for o in self._stop(i)]
        delta = {"stop_reason": STOP_TO_WIRE.get(ev.stop_reason, "end_turn"),
                 "stop_sequence": ev.stop_sequence}
        # The input is restated (as on the Anthropic surface): some upstreams report it only
        # at the end, and the SDK takes it from here when present.
        out.append({"type": "message_delta", "delta": delta, "usage": encode_usage(ev.usage)})
        out.append({"type": "message_stop",
                    "amazon-bedrock-invocationMetrics": self.metrics(ev.usage)})
        return out
