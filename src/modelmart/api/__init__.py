"""The ASGI app: one thin module per API surface. ``create_app`` assembles everything."""

from .app import create_app

__all__ = ["create_app"]
