"""Request and object ids."""

from __future__ import annotations

import os
import base64


def new_id(prefix: str = "") -> str:
    """A random 24-character url-safe id with an optional prefix (``chatcmpl-``, ``msg_``)."""
    return prefix + base64.b32encode(os.urandom(15)).decode().lower()
