"""Errors raised by the store; callers map them to HTTP statuses (Conflict → 409)."""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store cannot do: bad URL, broken database, failed migration."""


class Conflict(StoreError):
    """A unique name or id is already taken."""


class NotFoundInStore(StoreError):
    """A row the operation depends on does not exist."""


class SecretKeyError(StoreError):
    """The server key is missing, malformed, or not the one a stored secret was sealed with."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, restarting, every connection gone): temporary,
    a 503 for whoever asked, never a 500 or a 401."""
