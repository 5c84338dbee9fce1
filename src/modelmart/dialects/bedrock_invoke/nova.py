"""Amazon Nova's ``messages-v1`` body: Converse's messages, system, toolConfig and content
blocks (images as base64 text), with ``inferenceConfig`` spelt either way (Nova 1's
``max_new_tokens``/``top_p``/``top_k``, or Converse's ``maxTokens``/``topP``/``topK``).
The answer is ``{"output": {"message"}, "stopReason", "usage"}``; a stream is Converse's
events as objects (``{"messageStart": {...}}``, ``{"contentBlockDelta": {...}}`` ...), the
``metadata`` one last, with the invocation metrics.
"""

from __future__ import annotations

from typing import Any

from modelmart.core.types import (
    BlockStart, BlockStop, MessageEnd, MessageStart, Request, Response, StreamEvent,
    ToolUseBlock, Usage,
)
from modelmart.dialects import bedrock_converse
from modelmart.dialects._blocks import OpenBlocks
from modelmart.dialects.bedrock_converse.blocks import encode_block
from modelmart.dialects.bedrock_converse.response import STOP_TO_WIRE
from modelmart.dialects.bedrock_converse.stream import _wire_deltas

from . import _check as check
from .chunks import ChunkStream

SCHEMA = "messages-v1"
_TOP = frozenset({"schemaVersion", "messages", "system", "inferenceConfig", "toolConfig"})
# Nova 1 and Converse spellings -> the Converse name.
_INFERENCE = {"maxTokens": "maxTokens", "max_new_tokens": "maxTokens",
              "temperature": "temperature", "topP": "topP", "top_p": "topP",
              "stopSequences": "stopSequences"}
_TOP_K = ("topK", "top_k")
_PASSED = ("reasoningConfig",)  # Nova 2's reasoning settings: an additional model field
_INFERENCE_KEYS = frozenset(_INFERENCE).union(_TOP_K, _PASSED)


def decode(data: dict, model_id: str, *, stream: bool) -> Request:
    check.only(data, _TOP)
    schema = data.get("schemaVersion")
    if schema is not None and schema != SCHEMA:
        raise check.fail(f"expected {SCHEMA!r}, got {schema!r}", "schemaVersion")
    body = {k: v for k, v in data.items() if k in ("messages", "system", "toolConfig")}
    top_k, passed = None, {}
    if data.get("inferenceConfig") is not None:
        body["inferenceConfig"], top_k, passed = _inference(data["inferenceConfig"])
    req = bedrock_converse.decode_request(body, model_id, stream=stream)
    if top_k is not None:
        req.top_k = top_k
    req.extra.update(passed)
    req.source = "bedrock"  # a Converse-shaped request: its extras are Bedrock's
    return req


def _inference(value: Any) -> tuple[dict, int | None, dict]:
    p = "inferenceConfig"
    data = check.obj(value, p)
    check.only(data, _INFERENCE_KEYS, p)
    out: dict = {}
    for key in data:
        name = _INFERENCE.get(key)
        if name is not None and data[key] is not None:
            if name in out:
                raise check.fail(f"{key} repeats {name}; send one of them", f"{p}.{key}")
            out[name] = data[key]
    top_k = None
    for key in _TOP_K:
        if data.get(key) is not None:
            top_k = check.integer(data[key], f"{p}.{key}", minimum=0)
    passed = {k: _flat(data[k], f"{p}.{k}") for k in _PASSED if data.get(k) is not None}
    return out, top_k, passed


def _flat(value: Any, param: str) -> dict:
    """A settings object of plain values ({"type": "enabled", "maxReasoningEffort": "low"}):
    passed on unread, so nothing nested."""
    for key, item in check.obj(value, param).items():
        if isinstance(item, (dict, list)):
            raise check.fail("expected a plain value, got " + check.describe(item),
                             f"{param}.{key}")
    return value


def _usage(usage: Usage) -> dict:
    return {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
            "totalTokens": usage.total_input_tokens + usage.output_tokens,
            "cacheReadInputTokenCount": usage.cache_read_tokens,
            "cacheWriteInputTokenCount": usage.cache_write_tokens}


def encode_response(resp: Response, model: str) -> dict:
    content = [b for b in (encode_block(block) for block in resp.content) if b is not None]
    return {"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": STOP_TO_WIRE.get(resp.stop_reason, "end_turn"),
            "usage": _usage(resp.usage)}


class StreamEncoder(ChunkStream):
    """Text and reasoning blocks start with their first delta; tool-use blocks with a
    ``contentBlockStart`` (as in ConverseStream)."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__()
        self.model = model
        self._started = False
        self._wire_index: dict[int, int] = {}
        self._open = OpenBlocks()

    def objects(self, ev: StreamEvent) -> list[dict]:
        out = [] if self._started else [{"messageStart": {"role": "assistant"}}]
        self._started = True
        if isinstance(ev, MessageStart):
            return out
        if isinstance(ev, BlockStart):
            index = self._wire_index[ev.index] = len(self._wire_index)
            self._open.start(index)
            if isinstance(ev.block, ToolUseBlock):
                use = {"toolUseId": ev.block.id, "name": ev.block.name}
                out.append({"contentBlockStart": {"start": {"toolUse": use},
                                                  "contentBlockIndex": index}})
        elif isinstance(ev, BlockStop):
            out += self._stop(self._wire_index.get(ev.index))
        elif isinstance(ev, MessageEnd):
            out += [o for i in list(self._open) for o in self._stop(i)]
            out.append({"messageStop": {"stopReason": STOP_TO_WIRE.get(ev.stop_reason,
                                                                        "end_turn")}})
            out.append({"metadata": {"usage": _usage(ev.usage), "metrics": {}, "trace": {}},
                        "amazon-bedrock-invocationMetrics": self.metrics(ev.usage)})
        else:
            index = self._wire_index.get(getattr(ev, "index", -1))
            if index is not None:
                out += [{"contentBlockDelta": {"delta": d, "contentBlockIndex": index}}
                        for d in _wire_deltas(ev)]
        return out

    def _stop(self, index: int | None) -> list[dict]:
        if not self._open.stop(index):
            return []
        return [{"contentBlockStop": {"contentBlockIndex": index}}]
