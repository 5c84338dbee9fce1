"""Meta Llama and Mistral prompt bodies: a templated ``prompt`` string (read back into
turns by ``prompt.parse_prompt``) and sampling settings.

- Llama: ``prompt``, ``max_gen_len``, ``temperature``, ``top_p``; answers
  ``{"generation", "prompt_token_count", "generation_token_count", "stop_reason"}``,
  streamed as pieces of the same shape.
- Mistral: ``prompt``, ``max_tokens``, ``stop``, ``temperature``, ``top_p``, ``top_k``;
  answers ``{"outputs": [{"text", "stop_reason"}]}``, streamed likewise.
- Amazon Titan Text: ``inputText`` and ``textGenerationConfig`` (``maxTokenCount``,
  ``temperature``, ``topP``, ``stopSequences``); answers ``{"inputTextTokenCount",
  "results": [{"tokenCount", "outputText", "completionReason"}]}``, streamed as
  ``{"outputText", "index", "totalOutputTextTokenCount", "completionReason",
  "inputTextTokenCount"}`` pieces.

``stop_reason`` is ``stop`` or ``length`` (Titan: ``FINISH`` or ``LENGTH``). These models
answer in text only: reasoning and tool calls an upstream might add are left out.
"""

from __future__ import annotations

from modelmart.core.types import (
    MessageEnd, MessageStart, Request, Response, StreamEvent, TextBlock, TextDelta,
)

from . import _check as check
from .chunks import ChunkStream
from .prompt import parse_prompt


def _stop(reason: str) -> str:
    return "length" if reason == "max_tokens" else "stop"


def _text(resp: Response) -> str:
    return "".join(b.text for b in resp.content if isinstance(b, TextBlock))


def _request(data: dict, model_id: str, stream: bool, field: str = "prompt") -> Request:
    prompt = check.string(check.required(data, field, field), field, nonempty=True)
    system, messages = parse_prompt(prompt, labelled=field == "inputText")
    req = Request(model=model_id, messages=messages, system=system, stream=stream)
    if data.get("temperature") is not None:
        req.temperature = check.number(data["temperature"], "temperature", low=0, high=1)
    if data.get("top_p") is not None:
        req.top_p = check.number(data["top_p"], "top_p", low=0, high=1)
    return req


# ---- Meta Llama -----------------------------------------------------------------------

_LLAMA = frozenset({"prompt", "max_gen_len", "temperature", "top_p"})


def decode_llama(data: dict, model_id: str, *, stream: bool) -> Request:
    check.only(data, _LLAMA)
    req = _request(data, model_id, stream)
    if data.get("max_gen_len") is not None:
        req.max_tokens = check.integer(data["max_gen_len"], "max_gen_len", minimum=1)
    return req


def encode_llama(resp: Response, model: str) -> dict:
    return {"generation": _text(resp), "prompt_token_count": resp.usage.total_input_tokens,
            "generation_token_count": resp.usage.output_tokens,
            "stop_reason": _stop(resp.stop_reason)}


class LlamaStream(ChunkStream):
    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__()
        self._pieces = 0
        self._prompt_tokens: int | None = None  # sent with the first piece only

    def objects(self, ev: StreamEvent) -> list[dict]:
        if isinstance(ev, MessageStart):
            self._prompt_tokens = ev.usage.total_input_tokens or None
        elif isinstance(ev, TextDelta) and ev.text:
            self._pieces += 1
            return [self._piece(ev.text, None)]
        elif isinstance(ev, MessageEnd):
            last = self._piece("", _stop(ev.stop_reason))
            last["prompt_token_count"] = ev.usage.total_input_tokens
            last["generation_token_count"] = ev.usage.output_tokens
            last["amazon-bedrock-invocationMetrics"] = self.metrics(ev.usage)
            return [last]
        return []

    def _piece(self, text: str, stop: str | None) -> dict:
        prompt, self._prompt_tokens = self._prompt_tokens, None
        return {"generation": text, "prompt_token_count": prompt,
                "generation_token_count": self._pieces, "stop_reason": stop}


# ---- Mistral --------------------------------------------------------------------------

_MISTRAL = frozenset({"prompt", "max_tokens", "stop", "temperature", "top_p", "top_k"})


def decode_mistral(data: dict, model_id: str, *, stream: bool) -> Request:
    if "max_tokens_to_sample" in data:
        raise check.fail("Anthropic's text completions body (prompt, max_tokens_to_sample) "
                         "is not served here; send the Messages body (anthropic_version, "
                         "messages, max_tokens)", "max_tokens_to_sample")
    check.only(data, _MISTRAL)
    req = _request(data, model_id, stream)
    if data.get("max_tokens") is not None:
        req.max_tokens = check.integer(data["max_tokens"], "max_tokens", minimum=1)
    if data.get("top_k") is not None:
        req.top_k = check.integer(data["top_k"], "top_k", minimum=0)
    if data.get("stop") is not None:
        req.stop = [check.string(s, f"stop.{i}", nonempty=True)
                    for i, s in enumerate(check.array(data["stop"], "stop"))]
    return req


def encode_mistral(resp: Response, model: str) -> dict:
    return {"outputs": [{"text": _text(resp), "stop_reason": _stop(resp.stop_reason)}]}


class MistralStream(ChunkStream):
    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__()

    def objects(self, ev: StreamEvent) -> list[dict]:
        if isinstance(ev, TextDelta) and ev.text:
            return [{"outputs": [{"text": ev.text, "stop_reason": None}]}]
        if isinstance(ev, MessageEnd):
            return [{"outputs": [{"text": "", "stop_reason": _stop(ev.stop_reason)}],
                     "amazon-bedrock-invocationMetrics": self.metrics(ev.usage)}]
        return []


# ---- Amazon Titan Text ----------------------------------------------------------------

_TITAN = frozenset({"inputText", "textGenerationConfig"})
_TITAN_CONFIG = frozenset({"maxTokenCount", "temperature", "topP", "stopSequences"})


def decode_titan(data: dict, model_id: str, *, stream: bool) -> Request:
    check.only(data, _TITAN)
    req = _request(data, model_id, stream, "inputText")
    p = "textGenerationConfig"
    config = check.obj(data.get(p) or {}, p)
    check.only(config, _TITAN_CONFIG, p)
    if config.get("maxTokenCount") is not None:
        req.max_tokens = check.integer(config["maxTokenCount"], f"{p}.maxTokenCount", minimum=1)
    if config.get("temperature") is not None:
        req.temperature = check.number(config["temperature"], f"{p}.temperature", low=0, high=1)
    if config.get("topP") is not None:
        req.top_p = check.number(config["topP"], f"{p}.topP", low=0, high=1)
    if config.get("stopSequences") is not None:
        stops = check.array(config["stopSequences"], f"{p}.stopSequences")
        req.stop = [check.string(s, f"{p}.stopSequences.{i}", nonempty=True)
                    for i, s in enumerate(stops)]
    return req


def _titan_reason(reason: str) -> str:
    return {"max_tokens": "LENGTH", "stop_sequence": "STOP_CRITERIA_MET",
            "content_filter": "CONTENT_FILTERED"}.get(reason, "FINISH")


def encode_titan(resp: Response, model: str) -> dict:
    return {"inputTextTokenCount": resp.usage.total_input_tokens,
            "results": [{"tokenCount": resp.usage.output_tokens, "outputText": _text(resp),
                         "completionReason": _titan_reason(resp.stop_reason)}]}


class TitanStream(ChunkStream):
    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__()
        self._pieces = 0
        self._input: int | None = None

    def objects(self, ev: StreamEvent) -> list[dict]:
        if isinstance(ev, MessageStart):
            self._input = ev.usage.total_input_tokens or None
        elif isinstance(ev, TextDelta) and ev.text:
            self._pieces += 1
            return [self._piece(ev.text, self._pieces, None, self._input)]
        elif isinstance(ev, MessageEnd):
            usage = ev.usage
            last = self._piece("", usage.output_tokens, _titan_reason(ev.stop_reason),
                               usage.total_input_tokens)
            last["amazon-bedrock-invocationMetrics"] = self.metrics(usage)
            return [last]
        return []

    @staticmethod
    def _piece(text: str, count: int, reason: str | None, input_tokens: int | None) -> dict:
        return {"outputText": text, "index": 0, "totalOutputTextTokenCount": count,
                "completionReason": reason, "inputTextTokenCount": input_tokens}
