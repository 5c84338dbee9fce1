"""Routing: from a public model id to the deployment that serves a request."""

from .router import Router, Routed

__all__ = ["Router", "Routed"]
