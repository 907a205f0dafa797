"""Encryption at rest for raw mail and attachment files (optional; `[encryption] keys_env` in the config).

Fernet (AES-128-CBC with HMAC-SHA256) from `cryptography`, as a MultiFernet: the first key encrypts, all
keys decrypt, so rotation is "put a new key first, run `supportd storage rotate`, then drop the old
key". Sealed values carry a prefix; values without it were stored before encryption was switched on
and are read as they are.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

PREFIX = b"SDENC1:"


class SealError(Exception):
    """Sealed data that none of the configured keys opens."""


class Sealer:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet: MultiFernet | None = None
        if keys:  # cryptography is loaded only when encryption is on (every parsing process builds a Sealer)
            from cryptography.fernet import Fernet, MultiFernet

            self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_env(cls, variable: str | None) -> Sealer:
        if not variable:
            return cls([])
        return cls([k.strip().encode() for k in os.environ.get(variable, "").split(",") if k.strip()])

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, data: bytes) -> bytes:
        return data if self._fernet is None else PREFIX + self._fernet.encrypt(data)

    def open(self, data: bytes) -> bytes:
        if not data.startswith(PREFIX):
            return data
        if self._fernet is None:
            raise SealError("data is encrypted but no key is configured ([encryption] keys_env)")
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(data[len(PREFIX):])
        except InvalidToken:
            raise SealError("none of the configured keys opens this data") from None

    def reseal(self, data: bytes) -> bytes:
        """Under the first key (rotation); plaintext gets sealed."""
        if self._fernet is None:
            return data
        if not data.startswith(PREFIX):
            return self.seal(data)
        return PREFIX + self._fernet.rotate(data[len(PREFIX):])


def check_keys(variable: str) -> str | None:
    """A problem with the keys in `variable`, in words, or None."""
    from cryptography.fernet import Fernet

    raw = os.environ.get(variable)
    if not raw:
        return f"environment variable {variable} is not set"
    for i, key in enumerate(k.strip() for k in raw.split(",")):
        try:
            Fernet(key.encode())
        except ValueError:
            return f"key {i + 1} in {variable} is not a Fernet key (make one with: supportd storage new-key)"
    return None
