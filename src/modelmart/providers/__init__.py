"""Upstream providers: one module per upstream kind. ``registry.provider_class`` looks a kind
up lazily, so an optional dependency (llama-cpp-python for ``local``) is only imported when a
deployment of that kind exists."""
