"""The ``local`` provider kind: a GGUF model run in-process with llama-cpp-python."""

from .provider import LocalProvider

__all__ = ["LocalProvider"]
