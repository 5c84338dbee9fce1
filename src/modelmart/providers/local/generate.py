"""The sampling loop. It runs on the model thread only, and both ``complete()`` and
``stream()`` go through it, so limits, stops and token counts behave the same for both."""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass
from typing import Any, Callable

import llama_cpp

from modelmart.core.types import Usage


@dataclass(slots=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    seed: int


@dataclass(slots=True)
class Plan:
    """Everything one generation needs, worked out (and validated) before it is queued."""

    prompt_tokens: list[int]
    max_tokens: int
    stop: list[str]
    sampling: Sampling
    grammar: str | None  # GBNF text, or None for free text
    tool_names: list[str]  # tools the output may call; empty: plain text
    forced_tool: bool  # the grammar forces a {"name", "arguments"} tool call


@dataclass(slots=True)
class Finished:
    stop_reason: str  # "end_turn" | "max_tokens" | "stop_sequence"
    stop_sequence: str | None = None


class TextStream:
    """Turns sampled token bytes into text that is safe to show: whole UTF-8 characters only,
    and never the beginning of a stop sequence that the next token might complete."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> tuple[str, str | None]:
        """Returns (text to emit now, the stop sequence that was hit or None)."""
        self._pending += self._utf8.decode(data)
        hit = self._earliest_stop()
        if hit is not None:
            index, stop = hit
            out, self._pending = self._pending[:index], ""
            return out, stop
        keep = self._held_back()
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, None

    def flush(self) -> str:
        out, self._pending = self._pending + self._utf8.decode(b"", final=True), ""
        return out

    def _earliest_stop(self) -> tuple[int, str] | None:
        found = [(self._pending.find(s), s) for s in self._stops]
        found = [f for f in found if f[0] >= 0]
        return min(found, default=None)

    def _held_back(self) -> int:
        """Length of the longest tail of the pending text that starts some stop sequence."""
        longest = max((len(s) for s in self._stops), default=0)
        for size in range(min(len(self._pending), longest - 1), 0, -1):
            tail = self._pending[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0


def generate(
    llama: Any,
    plan: Plan,
    usage: Usage,
    cancel: threading.Event,
    emit: Callable[[str], None],
) -> Finished | None:
    """Samples until end of turn, a stop sequence, max_tokens or ``cancel``; emits text as it
    goes and counts every sampled token into ``usage.output_tokens`` (the end-of-turn token
    excepted, as it is no output). Returns None when cancelled."""
    # A fresh context per request: the same seed then gives the same text whatever ran
    # before, and one tenant's prompt never lingers in the cache for the next.
    llama.reset()
    llama.set_seed(plan.sampling.seed)
    tokens = llama.generate(plan.prompt_tokens, **_sampler_args(plan))
    text = TextStream(plan.stop)
    vocab = llama._model.vocab
    try:
        for token in tokens:
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                return _finish(text, emit, Finished("end_turn"))
            usage.output_tokens += 1
            piece, stop = text.feed(llama.detokenize([token]))
            if piece:
                emit(piece)
            if stop is not None:
                return Finished("stop_sequence", stop)
            if usage.output_tokens >= plan.max_tokens:
                return _finish(text, emit, Finished("max_tokens"))
            # Checked between tokens: a client that went away costs at most one more token.
            if cancel.is_set():
                return None
    finally:
        tokens.close()
    return None  # unreachable: llama.generate never ends on its own


def _finish(text: TextStream, emit: Callable[[str], None], result: Finished) -> Finished:
    rest = text.flush()
    if rest:
        emit(rest)
    return result


def _sampler_args(plan: Plan) -> dict[str, Any]:
    s = plan.sampling
    grammar = llama_cpp.LlamaGrammar.from_string(plan.grammar) if plan.grammar else None
    return {
        "temp": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "repeat_penalty": 1.0,
        "grammar": grammar,
    }
