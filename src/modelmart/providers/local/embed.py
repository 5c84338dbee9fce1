"""Embeddings from the local GGUF: a second llama.cpp instance in embedding mode.

A context is either for generation or for embeddings, so embeddings get their own
``Llama`` (the weights are memory-mapped: the second copy costs little). It is loaded the
first time an embedding is asked for, and like everything llama.cpp it is used on the
model thread only. Vectors are the mean of the last hidden states over the input's tokens,
scaled to unit length; each input is decoded alone, so a text always gets the same vector
whatever it was sent with.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from modelmart.core.errors import InvalidRequest

from .model import LocalOptions, _extra_buffers

if TYPE_CHECKING:
    from llama_cpp import Llama


class Embedder:
    def __init__(self, options: LocalOptions) -> None:
        self.llama = _load_embedding_llama(options)
        self.n_ctx = self.llama.n_ctx()
        self.size = self.llama.n_embd()

    def embed(self, texts: list[str], dimensions: int | None, name: str,
              cancel: threading.Event) -> tuple[list[list[float]], int] | None:
        """(unit vectors, input tokens); None when cancelled between inputs."""
        if dimensions is not None and dimensions != self.size:
            raise InvalidRequest(f"model {name} makes {self.size}-dimensional embeddings; "
                                 f"it cannot make {dimensions}-dimensional ones",
                                 param="dimensions")
        counts = [len(self.tokens(text)) for text in texts]
        for i, n in enumerate(counts):
            if n > self.n_ctx:
                raise InvalidRequest(f"input[{i}] is {n} tokens; model {name} embeds at most "
                                     f"{self.n_ctx} tokens per input", param="input")
        vectors = []
        for text in texts:
            if cancel.is_set():
                return None
            vectors.append(_unit(self.llama.embed(text, normalize=False, truncate=False)))
        return vectors, sum(counts)

    def tokens(self, text: str) -> list[int]:
        # The same tokens Llama.embed decodes (it tokenizes with the model's BOS rule).
        return self.llama.tokenize(text.encode("utf-8"))

    def close(self) -> None:
        self.llama.close()


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


def _load_embedding_llama(options: LocalOptions) -> "Llama":
    import llama_cpp

    with _extra_buffers(options.cpu_extra_buffers):
        return llama_cpp.Llama(
            model_path=options.model_path,
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_ctx=options.n_ctx,
            # A whole input must be one micro-batch: split in two, llama.cpp pools only the
            # last part (a 1,090-token text came out 2.8 away from its true mean). Also keeps
            # n_ubatch >= n_seq_max, below which building the pooling graph aborts.
            n_batch=options.n_ctx,
            n_ubatch=options.n_ctx,
            n_threads=options.n_threads,
            n_threads_batch=options.n_threads,
            verbose=False,
        )
