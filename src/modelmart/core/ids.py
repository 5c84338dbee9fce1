"""Request and object ids."""

from __future__ import annotations

import os


def new_id(prefix: str = "") -> str:
    """A random 24-character hex id (96 bits) with an optional prefix (``chatcmpl-``,
    ``msg_``)."""
    return prefix + os.urandom(12).hex()
