"""Client apps: who may call the API, and with which secrets their webhooks are signed.

Each app has its own API key, stored as a SHA-256 digest only, and its own `whsec_` signing
secret, stored encrypted (`encryption.py`). A rotated secret keeps signing, beside the new one,
for an overlap (`previous_secret_until`), so receivers can switch without missing a webhook. A
rotated or revoked API key is refused from the next request on, on every replica: keys are
looked up in the database on every request, never remembered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Row,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from app.delivery.signing import generate_secret
from app.encryption import KeyBox, UndecryptableError
from app.ids import is_id, new_id
from app.store.batching import Batcher
from app.store.database import Database, transaction
from app.store.tables import clients

DEFAULT_CLIENT_NAME = "default"
MAX_NAME_LENGTH = 100
#: What names the secret in errors about decrypting it.
SECRET_NAME = "the client app's signing secret"
#: How a secret stored before secrets were encrypted begins (an encrypted one never does).
_IN_CLEAR = "whsec_"


#: The app is not revoked.
_NOT_REVOKED = clients.c.revoked_at.is_(None)


def _holding(digest: str | BindParameter[str]) -> tuple[ColumnElement[bool], ...]:
    """An app holds the key of this digest: it is its current key, and the app not revoked."""
    return clients.c.api_key_hash == digest, _NOT_REVOKED


#: Who holds a key, as `_KeyOwner` reads it.
_KEY_OWNERS = select(clients.c.id, clients.c.name, clients.c.api_key_hash)
#: The app whose API key has this digest, unless it was revoked (the unique index on the digest
#: makes this one index lookup).
_BY_KEY_HASH = _KEY_OWNERS.where(*_holding(bindparam("digest")))
#: The same, as SQLite's own driver takes it (one positional parameter).
_BY_KEY_HASH_SQLITE = str(_BY_KEY_HASH.compile(dialect=sqlite.dialect()))
#: The apps holding any of these digests: the lookups of requests that came together.
_BY_KEY_HASHES = _KEY_OWNERS.where(
    clients.c.api_key_hash.in_(bindparam("digests", expanding=True)), _NOT_REVOKED
)
#: A row of any shape.
_Row = Row[*tuple[Any, ...]]
_APP_COLUMNS = (
    clients.c.id,
    clients.c.name,
    clients.c.created_at,
    clients.c.revoked_at,
    clients.c.previous_secret_until,
)


@dataclass(frozen=True, slots=True)
class Client:
    """The caller, as its API key identifies it."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ClientApp:
    """A client app as its operator sees it: never its key, nor its secrets."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    #: Until when the secret replaced by the last rotation still signs too; None when it no
    #: longer does.
    previous_secret_until: datetime | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """What was just made for an app, shown to the operator this once: the key is never stored
    (only its digest), and the secret is fetched again only by the app (`GET /v1/client`)."""

    client: ClientApp
    api_key: str | None = None
    signing_secret: str | None = None


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What the first start generated, to be shown to the operator exactly once."""

    client: Client
    generated_api_key: str | None
    generated_signing_secret: str | None
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class _KeyOwner:
    id: str
    name: str
    api_key_hash: str


class ClientNotFoundError(LookupError):
    """No client app has this id."""


class ClientRevokedError(Exception):
    """The app was revoked: it gets no new key or secret."""


class NameTakenError(Exception):
    """Another client app has this name."""


class InvalidNameError(ValueError):
    """A name must be one readable line of at most 100 characters."""


def hash_api_key(api_key: str) -> str:
    """API keys are random and long, so a plain SHA-256 is enough and keeps lookups indexed."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def generate_api_key() -> str:
    return "rk_" + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    """The name, stripped; names show in lists and logs, so they are one printable line."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidNameError(f"a name must have 1 to {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise InvalidNameError("a name must not contain control or invisible characters")
    return name


class ClientApps:
    """The client apps of one relay, for the API (who is calling) and its operator (admin API
    and `python -m app clients`).

    :param key_box: encrypts and decrypts signing secrets.
    :param secret_overlap: seconds a rotated-away secret keeps signing next to the new one.
    """

    def __init__(self, db: Database, *, key_box: KeyBox, secret_overlap: float) -> None:
        self._db = db
        self._key_box = key_box
        self._overlap = timedelta(seconds=secret_overlap)
        self._lookups: Batcher[str, _KeyOwner | None] = Batcher(
            lambda digests: _by_key_hashes(db, digests)
        )

    async def authenticate(self, api_key: str) -> Client | None:
        """The app this key belongs to; None for an unknown, rotated-away or revoked key.

        Looked up on every request, by the key's digest: a key rotated or revoked on any replica
        is refused by all of them from the next request on. Requests that come together are
        looked up together, in one statement (on PostgreSQL, one transaction and one round trip
        instead of one per request). That the lookup goes by digest makes
        its timing say nothing about the key; the digest found is compared in constant time
        anyway, so no store-side quirk of comparison can admit a near miss.
        """
        return await self.holder_of(hash_api_key(api_key))

    async def holder_of(self, digest: str) -> Client | None:
        """The app whose current API key has this digest (`hash_api_key`); None once that key
        was rotated away or revoked. The console's session holds the digest of the key it was
        opened with, not the key, and asks this on every request."""
        row = await self._lookups.submit(digest)
        if row is None or not hmac.compare_digest(row.api_key_hash, digest):
            return None
        return Client(row.id, row.name)

    async def signing_secret(self, client_id: str) -> str:
        """The app's current signing secret, in clear.

        :raises UndecryptableError: RELAY_ENCRYPTION_KEY no longer holds its key.
        """
        return (await self.signing_secrets(client_id))[0]

    async def signing_secrets(self, client_id: str) -> tuple[str, ...]:
        """The app's current signing secret, and while a rotation's overlap lasts the one it
        replaced, in clear: what its webhooks are signed with.

        :raises UndecryptableError: RELAY_ENCRYPTION_KEY no longer holds its key.
        """
        return (await self.signing_secrets_then(client_id))(datetime.now(UTC))

    async def signing_secrets_then(self, client_id: str) -> Callable[[datetime], tuple[str, ...]]:
        """What the app's webhooks were signed with at a given time, as far as the secrets kept
        tell (a secret rotated away is kept only through its overlap): read once, for the
        console's page of a watch, which shows the headers of each webhook's latest attempt.

        :raises UndecryptableError: when called, if RELAY_ENCRYPTION_KEY no longer holds its key.
        """
        signer = await _signer(self._db, client_id)
        if signer is None:
            raise ClientNotFoundError(client_id)

        def at(moment: datetime) -> tuple[str, ...]:
            return tuple(
                self._key_box.decrypt(encrypted, what=SECRET_NAME)
                for encrypted in signing_secrets(signer, moment)
            )

        return at

    async def create(self, name: str) -> Credentials:
        """A new app with a new key and secret.

        :raises InvalidNameError: the name is empty, too long or not one printable line.
        :raises NameTakenError: another app has this name.
        """
        name = check_name(name)
        api_key, secret = generate_api_key(), generate_secret()
        try:
            app = await _insert(
                self._db,
                name=name,
                api_key_hash=hash_api_key(api_key),
                signing_secret=self._key_box.encrypt(secret),
            )
        except IntegrityError:
            raise NameTakenError(f"a client app named {name!r} already exists") from None
        if app is None:
            raise NameTakenError(f"a client app named {name!r} already exists")
        return Credentials(app, api_key=api_key, signing_secret=secret)

    async def all(self) -> list[ClientApp]:
        """Every app, the oldest first, revoked ones included."""
        return await _all(self._db)

    async def get(self, client_id: str) -> ClientApp:
        _well_formed(client_id)
        app = await _one(self._db, client_id)
        if app is None:
            raise ClientNotFoundError(client_id)
        return app

    async def rotate_key(self, client_id: str) -> Credentials:
        """Give the app a new API key; the one it had is refused from now on.

        :raises ClientNotFoundError: no such app.
        :raises ClientRevokedError: the app was revoked.
        """
        _well_formed(client_id)
        api_key = generate_api_key()
        app = await _change(self._db, client_id, lambda _: {"api_key_hash": hash_api_key(api_key)})
        return Credentials(app, api_key=api_key)

    async def rotate_secret(self, client_id: str) -> Credentials:
        """Give the app a new signing secret. Webhooks are signed with both the new and the
        replaced secret until the overlap ends (at once with an overlap of 0), then with the new
        one only. A secret replaced by an earlier rotation stops signing now.

        :raises ClientNotFoundError: no such app.
        :raises ClientRevokedError: the app was revoked.
        """
        _well_formed(client_id)
        secret = generate_secret()
        encrypted = self._key_box.encrypt(secret)
        overlap = self._overlap

        def rotated(row: _Row) -> dict[str, Any]:
            keep = overlap > timedelta(0)
            return {
                "signing_secret": encrypted,
                "previous_signing_secret": row.signing_secret if keep else None,
                "previous_secret_until": datetime.now(UTC) + overlap if keep else None,
            }

        app = await _change(self._db, client_id, rotated)
        return Credentials(app, signing_secret=secret)

    async def revoke(self, client_id: str) -> ClientApp:
        """Refuse the app's key from now on; revoking twice is harmless.

        Watches it registered run to their end: each still gets its one webhook, signed as
        before. There is no undoing it: a new app is made instead.

        :raises ClientNotFoundError: no such app.
        """
        _well_formed(client_id)
        app = await _revoke(self._db, client_id)
        if app is None:
            raise ClientNotFoundError(client_id)
        return app


def _well_formed(client_id: str) -> None:
    """An id of another form names no app, and is not looked up (a NUL, for one, is more than
    PostgreSQL can compare)."""
    if not is_id("cli", client_id):
        raise ClientNotFoundError(client_id)


@transaction
def _by_key_hashes(conn: Connection, digests: Sequence[str]) -> list[_KeyOwner | None]:
    """Every request runs this. On SQLite each digest goes straight to the driver: SQLAlchemy's
    execution around a statement cost twice the statement itself (about 30 µs against 7 µs,
    measured alone), paid by every registration."""
    if conn.dialect.name == "sqlite":
        driver = conn.connection.dbapi_connection
        found = [driver.execute(_BY_KEY_HASH_SQLITE, (d,)).fetchone() for d in digests]  # type: ignore[union-attr]
        return [None if row is None else _KeyOwner(*row) for row in found]
    rows = conn.execute(_BY_KEY_HASHES, {"digests": sorted(set(digests))})
    owners = {row.api_key_hash: _KeyOwner(*row) for row in rows}
    return [owners.get(digest) for digest in digests]


def holds_key(client_id: str, digest: str) -> ColumnElement[bool]:
    """A condition that `client_id`'s current API key has `digest` and the app is not revoked:
    what `ClientApps.holder_of` asks, to be asked within another statement."""
    return select(clients.c.id).where(clients.c.id == client_id, *_holding(digest)).exists()


def signing_secrets(signer: _Row, now: datetime) -> tuple[str, ...]:
    """The client's secret, and the one it replaced while their overlap lasts (as stored):
    receivers that still verify with the old secret, and those already on the new one, both
    accept."""
    until = signer.previous_secret_until
    if signer.previous_signing_secret is None or until is None or until <= now:
        return (signer.signing_secret,)
    return (signer.signing_secret, signer.previous_signing_secret)


@transaction
def _signer(conn: Connection, client_id: str) -> _Row | None:
    return conn.execute(
        select(
            clients.c.signing_secret,
            clients.c.previous_signing_secret,
            clients.c.previous_secret_until,
        ).where(clients.c.id == client_id)
    ).one_or_none()


def _app(row: _Row) -> ClientApp:
    until = row.previous_secret_until
    return ClientApp(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        previous_secret_until=until if until is not None and until > datetime.now(UTC) else None,
    )


def _read(conn: Connection, client_id: str) -> ClientApp | None:
    row = conn.execute(select(*_APP_COLUMNS).where(clients.c.id == client_id)).one_or_none()
    return None if row is None else _app(row)


@transaction
def _one(conn: Connection, client_id: str) -> ClientApp | None:
    return _read(conn, client_id)


@transaction
def _all(conn: Connection) -> list[ClientApp]:
    rows = conn.execute(select(*_APP_COLUMNS).order_by(clients.c.created_at, clients.c.id))
    return [_app(row) for row in rows]


@transaction
def _insert(
    conn: Connection, *, name: str, api_key_hash: str, signing_secret: str
) -> ClientApp | None:
    """The new app; None if the name is taken (the unique index settles a race)."""
    if conn.execute(select(clients.c.id).where(clients.c.name == name)).first() is not None:
        return None
    client_id = new_id("cli")
    conn.execute(
        insert(clients).values(
            id=client_id,
            name=name,
            api_key_hash=api_key_hash,
            signing_secret=signing_secret,
            created_at=datetime.now(UTC),
        )
    )
    return _read(conn, client_id)


@transaction
def _change(
    conn: Connection, client_id: str, changes: Callable[[_Row], dict[str, Any]]
) -> ClientApp:
    """Apply `changes(row)` (a function of the app's row) to a live app, in one transaction."""
    row = conn.execute(
        select(clients.c.revoked_at, clients.c.signing_secret).where(clients.c.id == client_id)
    ).one_or_none()
    if row is None:
        raise ClientNotFoundError(client_id)
    if row.revoked_at is not None:
        raise ClientRevokedError(f"client app {client_id} was revoked")
    conn.execute(update(clients).where(clients.c.id == client_id).values(**changes(row)))
    app = _read(conn, client_id)
    assert app is not None
    return app


@transaction
def _revoke(conn: Connection, client_id: str) -> ClientApp | None:
    conn.execute(
        update(clients)
        .where(clients.c.id == client_id, clients.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return _read(conn, client_id)


@transaction
def encrypt_secrets_in_clear(conn: Connection, *, key_box: KeyBox) -> int:
    """Encrypt the signing secrets stored before secrets were encrypted; return how many.

    The migration that began encrypting them could not (the key is not in the database), so the
    first start after it does, and every later start finds none. Each is replaced only if it is
    still the one read, so replicas starting together do it once.
    """
    rows = conn.execute(
        select(clients.c.id, clients.c.signing_secret).where(
            clients.c.signing_secret.startswith(_IN_CLEAR, autoescape=True)
        )
    ).all()
    for row in rows:
        conn.execute(
            update(clients)
            .where(clients.c.id == row.id, clients.c.signing_secret == row.signing_secret)
            .values(signing_secret=key_box.encrypt(row.signing_secret))
        )
    return len(rows)


@transaction
def bootstrap_default_client(
    conn: Connection,
    *,
    api_key: str | None,
    signing_secret: str | None,
    key_box: KeyBox,
    secret_overlap: float = 0.0,
) -> Bootstrap:
    """Make the configured key and secret authoritative for the default app; generate whatever
    is missing.

    On a fresh database with nothing configured, a key and a secret are generated, so the relay
    works with no configuration at all. Later starts keep what was generated before, unless the
    environment now names a key or a secret, which then replaces it (rotation by configuration);
    a replaced secret keeps signing for `secret_overlap` seconds, as after a rotation by the
    admin API. A revoked default app stays revoked.
    """
    row = conn.execute(
        select(clients.c.id, clients.c.name, clients.c.signing_secret, clients.c.revoked_at).where(
            clients.c.name == DEFAULT_CLIENT_NAME
        )
    ).one_or_none()
    generated_key = generate_api_key() if api_key is None and row is None else None
    generated_secret = generate_secret() if signing_secret is None and row is None else None
    key = api_key or generated_key
    secret = signing_secret or generated_secret
    if row is None:
        assert key is not None and secret is not None
        client = Client(id=new_id("cli"), name=DEFAULT_CLIENT_NAME)
        conn.execute(
            insert(clients).values(
                id=client.id,
                name=client.name,
                api_key_hash=hash_api_key(key),
                signing_secret=key_box.encrypt(secret),
                created_at=datetime.now(UTC),
            )
        )
        return Bootstrap(client, generated_key, generated_secret)
    changes: dict[str, Any] = {}
    if key is not None:
        changes["api_key_hash"] = hash_api_key(key)
    if secret is not None:
        changes.update(_replacing_secret(row.signing_secret, secret, key_box, secret_overlap))
    if changes:
        conn.execute(update(clients).where(clients.c.id == row.id).values(**changes))
    return Bootstrap(
        Client(row.id, row.name), generated_key, generated_secret, row.revoked_at is not None
    )


def _replacing_secret(stored: str, secret: str, key_box: KeyBox, overlap: float) -> dict[str, Any]:
    """The changes that make `secret` the signing secret in place of `stored` (none if it is
    already); the replaced one signs on during the overlap, if it can still be read."""
    try:
        current = stored if stored.startswith(_IN_CLEAR) else key_box.decrypt(stored)
    except UndecryptableError:
        current = None
    if current == secret:
        return {}
    keep = current is not None and overlap > 0
    return {
        "signing_secret": key_box.encrypt(secret),
        "previous_signing_secret": key_box.encrypt(current) if keep and current else None,
        "previous_secret_until": datetime.now(UTC) + timedelta(seconds=overlap) if keep else None,
    }
