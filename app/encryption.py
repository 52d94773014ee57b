"""Encryption at rest of the upstream keys that watches bring with them.

Keys come from configuration (`RELAY_ENCRYPTION_KEY`), never from the database they protect: a
copy of the database alone does not reveal them. Several comma-separated keys allow rotation:
the first encrypts, any of them decrypts.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class UndecryptableError(Exception):
    """The stored value was encrypted with a key that is no longer configured."""


class KeyBox:
    def __init__(self, fernet: MultiFernet) -> None:
        self._fernet = fernet

    @classmethod
    def from_config(cls, keys: str) -> KeyBox:
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        if not parts:
            raise ValueError("RELAY_ENCRYPTION_KEY is empty")
        try:
            return cls(MultiFernet([Fernet(part) for part in parts]))
        except ValueError:
            raise ValueError(
                "RELAY_ENCRYPTION_KEY must be comma-separated Fernet keys (32 url-safe base64 "
                "bytes each); generate one with: python -c 'from cryptography.fernet import "
                "Fernet; print(Fernet.generate_key().decode())'"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise UndecryptableError(
                "the watch's upstream key was encrypted with a key RELAY_ENCRYPTION_KEY no longer "
                "holds"
            ) from None


def watch_key(key_box: KeyBox | None, encrypted: str | None) -> str | None:
    """The upstream key a watch brought, decrypted; None if it brought none."""
    if encrypted is None:
        return None
    if key_box is None:
        raise UndecryptableError(
            "the watch brought its own upstream key, but RELAY_ENCRYPTION_KEY is not set"
        )
    return key_box.decrypt(encrypted)
