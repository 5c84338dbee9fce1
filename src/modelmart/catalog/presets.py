"""Provider presets: what ``provider: mistral`` in the catalog means.

Every OpenAI-compatible host is a row here, not a module: its wire format is OpenAI's,
only the base URL, how the key is sent and which parameters it rejects differ.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1"},
    "azure-openai": {"kind": "openai", "auth_header": "api-key"},
    "openai-compatible": {"kind": "openai"},
    "mistral": {
        "kind": "openai",
        "base_url": "https://api.mistral.ai/v1",
        "unsupported_params": ["stream_options", "seed"],
    },
    "groq": {"kind": "openai", "base_url": "https://api.groq.com/openai/v1"},
    "together": {"kind": "openai", "base_url": "https://api.together.xyz/v1"},
    "deepseek": {"kind": "openai", "base_url": "https://api.deepseek.com/v1"},
    "fireworks": {"kind": "openai", "base_url": "https://api.fireworks.ai/inference/v1"},
    "openrouter": {"kind": "openai", "base_url": "https://openrouter.ai/api/v1"},
    "vllm": {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1"},
    "ollama": {"kind": "openai", "base_url": "http://127.0.0.1:11434/v1"},
    "llamacpp": {"kind": "openai", "base_url": "http://127.0.0.1:8080/v1"},
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com"},
    "bedrock": {"kind": "bedrock"},
    "gemini": {"kind": "gemini", "base_url": "https://generativelanguage.googleapis.com"},
    "local": {"kind": "local", "supports_images": False},
}
