"""Encryption of the one secret the store must be able to read back: the AWS secret of a
SigV4 key pair (checking a SigV4 signature takes the secret itself, so a hash will not do).

AES-256-GCM under a server key, with a fresh 96-bit random nonce per value and the row's
AWS access key id as associated data (a value copied to another row does not decrypt).
Stored as ``v1:<key id>:<base64url(nonce | ciphertext | tag)>``: the version says how to
read the rest, and the key id (8 hex digits of a SHA-256 over the key) says which server key
sealed it, so several keys can be held while rotating and a wrong key is named as such.
No I/O here: where the key comes from is ``serverkey.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelmart.store.errors import SecretKeyError

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
_SEALED = re.compile(r"v(\d+):([0-9a-f]+):")
KEY_FORMAT = ("32 random bytes in URL-safe base64 (44 characters; make one with "
              "'modelmart keys server-key')")


def new_server_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def parse_server_key(text: str, source: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretKeyError(f"{source}: a server key must be {KEY_FORMAT}")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"modelmart server key id\0" + key).hexdigest()[:8]


def sealed_key_id(stored: str) -> str | None:
    """The id of the server key that sealed ``stored``; None for a plaintext value."""
    match = _SEALED.match(stored)
    return match.group(2) if match else None


def is_sealed(stored: str) -> bool:
    # AWS secrets we make are URL-safe base64, which has no ":"; so no plaintext matches.
    return _SEALED.match(stored) is not None


def _aad(context: str) -> bytes:
    return b"modelmart aws_secret\0" + context.encode()


class SecretKeys:
    """The server keys: the first seals, each of them opens (the others are being retired)."""

    def __init__(self, keys: list[bytes], source: str) -> None:
        if not keys:
            raise SecretKeyError(f"{source} holds no server key: it must hold {KEY_FORMAT}")
        self.source = source  # where they came from, for error messages
        self._ciphers = {key_id(k): AESGCM(k) for k in keys}
        self.current_id = key_id(keys[0])

    @classmethod
    def parse(cls, text: str, source: str) -> SecretKeys:
        """Keys separated by commas or lines; lines starting with ``#`` are comments."""
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        parts = [p for p in re.split(r"[,\s]+", "\n".join(lines)) if p]
        return cls([parse_server_key(p, source) for p in parts], source)

    @property
    def ids(self) -> list[str]:
        return list(self._ciphers)

    def __contains__(self, kid: str) -> bool:
        return kid in self._ciphers

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(nonce, plaintext.encode(),
                                                        _aad(context))
        payload = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{VERSION}:{self.current_id}:{payload}"

    def open(self, stored: str, context: str) -> str:
        """The plaintext of a sealed value; SecretKeyError, saying why, if it cannot be."""
        match = _SEALED.match(stored)
        if match is None:
            raise SecretKeyError("the value is not encrypted")
        if f"v{match.group(1)}" != VERSION:
            raise SecretKeyError(f"the value is in format v{match.group(1)}, which this "
                                 f"version of modelmart cannot read (it reads {VERSION})")
        kid = match.group(2)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SecretKeyError(f"it was encrypted with server key {kid}, but {self.source} "
                                 f"holds {', '.join(self.ids)}")
        payload = stored[match.end():]
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(context)).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretKeyError(f"it does not decrypt with server key {kid}: the stored "
                                 "value is damaged or was altered") from None
