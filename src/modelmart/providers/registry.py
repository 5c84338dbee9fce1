"""Provider kinds by name, imported lazily."""

from __future__ import annotations

import importlib

from modelmart.core.errors import InvalidRequest

from .base import Provider

# kind -> "module:Class"
KINDS: dict[str, str] = {
    "openai": "modelmart.providers.openai:OpenAIProvider",
    "anthropic": "modelmart.providers.anthropic:AnthropicProvider",
    "local": "modelmart.providers.local:LocalProvider",
    "gemini": "modelmart.providers.gemini:GeminiProvider",
    "bedrock": "modelmart.providers.bedrock:BedrockProvider",
}


def provider_class(kind: str) -> type[Provider]:
    target = KINDS.get(kind)
    if target is None:
        raise InvalidRequest(f"unknown provider kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
