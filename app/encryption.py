"""Encryption at rest of the secrets in the database: client apps' signing secrets and the
upstream keys that watches bring with them.

Keys come from configuration (`RELAY_ENCRYPTION_KEY`) or, for a SQLite database, from a file
the relay makes beside it on first start; never from the database they protect: a copy of the
database alone does not reveal them. Several comma-separated keys allow rotation: the first
encrypts, any of them decrypts.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

#: What the key file beside a SQLite database is called: the database's own name and this.
KEY_FILE_SUFFIX = ".key"
_GENERATE_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


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
                f"bytes each); {_GENERATE_HINT}"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, *, what: str = "the watch's upstream key") -> str:
        """:param what: names the secret in the error, which is logged and shown to clients."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise UndecryptableError(
                f"{what} was encrypted with a key RELAY_ENCRYPTION_KEY no longer holds"
            ) from None


class KeyMissingError(ValueError):
    """No key is configured, and there is no place of the relay's own to keep one."""


def key_box_for(configured: str | None, database_url: str) -> KeyBox:
    """The keys that encrypt the database's secrets: the configured ones, else the relay's own.

    Without `RELAY_ENCRYPTION_KEY`, a SQLite database gets a key generated on first start and
    kept in a file beside it (`relay.db.key`, mode 0600): the relay works with no configuration,
    and the key travels with the database file it belongs to. A PostgreSQL database has no such
    place: its replicas, each on its own machine, must all hold the same key, so one must be
    configured. An in-memory SQLite database, gone when the process ends, gets a key that is
    gone with it.

    :raises KeyMissingError: PostgreSQL (or another server) and no key configured.
    """
    if configured is not None:
        return KeyBox.from_config(configured)
    # Imported here: the capture process reads the settings (which import this module) and must
    # stay small, and it never opens a database.
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise KeyMissingError(
            "RELAY_ENCRYPTION_KEY must be set when the database is not a SQLite file: the relay "
            "encrypts client apps' signing secrets and upstream keys with it, and every replica "
            f"needs the same key; {_GENERATE_HINT}"
        )
    if url.database in (None, "", ":memory:"):
        return KeyBox.from_config(Fernet.generate_key().decode())
    return _kept_beside(Path(url.database + KEY_FILE_SUFFIX))


def _kept_beside(path: Path) -> KeyBox:
    """The key in `path`, made there (mode 0600) if it is not there yet.

    The file appears whole or not at all (written aside, then linked into place), so a relay and
    a `clients` command starting together agree on one key.
    """
    if not path.exists():
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, Fernet.generate_key() + b"\n")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(aside, path)
            log.warning(
                "RELAY_ENCRYPTION_KEY is not set, so a key was generated to encrypt the secrets "
                "stored in the database, and kept in %s (mode 0600). Back it up with the "
                "database: without it, the signing secrets and upstream keys stored there cannot "
                "be read.",
                path,
            )
        except FileExistsError:
            pass  # made meanwhile by another process: that one is the key
        finally:
            aside.unlink()
    elif path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s, which holds the relay's encryption key, is readable by others", path)
    try:
        return KeyBox.from_config(path.read_text())
    except ValueError:
        raise ValueError(
            f"{path} must hold comma-separated Fernet keys; {_GENERATE_HINT}"
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
