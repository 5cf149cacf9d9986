"""Encryption at rest for stored message bodies (`[storage] encrypt = true`).

pynacl `SecretBox` under a 32-byte key kept in a key file created with mode 0600 on
first use (its directory 0700 when it has to be made).  With no key the cipher is the identity, so callers never branch.
"""

from __future__ import annotations

import os
from pathlib import Path

from nacl.secret import SecretBox
from nacl.utils import random as nacl_random

_PREFIX = "nacl:"


def load_or_create_key(path: Path) -> bytes:
    path = path.expanduser()
    if path.exists():
        key = path.read_bytes()
        if len(key) != SecretBox.KEY_SIZE:
            raise ValueError(f"{path}: not a {SecretBox.KEY_SIZE}-byte key")
        return key
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = nacl_random(SecretBox.KEY_SIZE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class BodyCipher:
    def __init__(self, key: bytes | None) -> None:
        self._box = SecretBox(key) if key else None

    @property
    def enabled(self) -> bool:
        return self._box is not None

    def seal(self, plain: str) -> str:
        if self._box is None:
            return plain
        return _PREFIX + self._box.encrypt(plain.encode()).hex()

    def open(self, stored: str) -> str:
        if not stored.startswith(_PREFIX):
            return stored
        if self._box is None:
            raise ValueError("stored body is encrypted but no key is configured")
        return self._box.decrypt(bytes.fromhex(stored[len(_PREFIX) :])).decode()
