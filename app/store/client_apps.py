"""Client apps: who may call the API, and with which secret their webhooks are signed."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from app.delivery.signing import generate_secret
from app.ids import new_id
from app.store.database import Database, transaction
from app.store.tables import clients

DEFAULT_CLIENT_NAME = "default"


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    signing_secret: str


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What the first start generated, to be shown to the operator exactly once."""

    client: Client
    generated_api_key: str | None
    generated_signing_secret: str | None


def hash_api_key(api_key: str) -> str:
    """API keys are random and long, so a plain SHA-256 is enough and keeps lookups indexed."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def generate_api_key() -> str:
    return "rk_" + secrets.token_urlsafe(32)


@transaction
def bootstrap_default_client(
    conn: Connection, *, api_key: str | None, signing_secret: str | None
) -> Bootstrap:
    """Make the configured key and secret authoritative; generate whatever is missing.

    On a fresh database with nothing configured, a key and a secret are generated, so the relay
    works with no configuration at all. Later starts keep what was generated before, unless the
    environment now names a key or a secret, which then replaces it (rotation by configuration).
    """
    row = conn.execute(select(clients).where(clients.c.name == DEFAULT_CLIENT_NAME)).one_or_none()
    generated_key = generate_api_key() if api_key is None and row is None else None
    generated_secret = generate_secret() if signing_secret is None and row is None else None
    key = api_key or generated_key
    secret = signing_secret or generated_secret
    if row is None:
        assert key is not None and secret is not None
        client = Client(id=new_id("cli"), name=DEFAULT_CLIENT_NAME, signing_secret=secret)
        conn.execute(
            insert(clients).values(
                id=client.id,
                name=client.name,
                api_key_hash=hash_api_key(key),
                signing_secret=secret,
                created_at=datetime.now(UTC),
            )
        )
    else:
        client = Client(id=row.id, name=row.name, signing_secret=secret or row.signing_secret)
        changes: dict[str, str] = {}
        if key is not None:
            changes["api_key_hash"] = hash_api_key(key)
        if secret is not None:
            changes["signing_secret"] = secret
        if changes:
            conn.execute(update(clients).where(clients.c.id == row.id).values(**changes))
    return Bootstrap(client, generated_key, generated_secret)


class KnownClients:
    """Resolves API keys, remembering each known one for `ttl` seconds.

    Every API request is authenticated; without this, each would cost a query. A key replaced by
    configuration (another replica restarting with a new RELAY_API_KEY) stops working here within
    `ttl`. Unknown keys are never remembered, so garbage keys cannot grow the memory.
    """

    def __init__(self, db: Database, *, ttl: float = 30.0) -> None:
        self._db = db
        self._ttl = ttl
        self._known: dict[str, tuple[Client, float]] = {}

    async def find(self, api_key: str) -> Client | None:
        digest = hash_api_key(api_key)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        client = await _by_key_hash(self._db, digest)
        if client is None:
            self._known.pop(digest, None)
            return None
        self._known[digest] = (client, now + self._ttl)
        return client


@transaction
def _by_key_hash(conn: Connection, digest: str) -> Client | None:
    row = conn.execute(
        select(clients.c.id, clients.c.name, clients.c.signing_secret).where(
            clients.c.api_key_hash == digest
        )
    ).one_or_none()
    return None if row is None else Client(row.id, row.name, row.signing_secret)
