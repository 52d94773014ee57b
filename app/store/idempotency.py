"""Idempotency keys: a retried POST gets the answer the first one got, for a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from app.store.database import Database, transaction
from app.store.tables import idempotency_keys

KEY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int
    body: str


@transaction
def find(conn: Connection, *, client_id: str, key: str) -> StoredResponse | None:
    row = conn.execute(
        select(
            idempotency_keys.c.request_hash,
            idempotency_keys.c.status_code,
            idempotency_keys.c.response,
        ).where(
            idempotency_keys.c.client_id == client_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_at > datetime.now(UTC) - KEY_LIFETIME,
        )
    ).one_or_none()
    return None if row is None else StoredResponse(*row)


async def save(
    db: Database, *, client_id: str, key: str, response: StoredResponse
) -> StoredResponse:
    """Store the answer, unless a concurrent request with the same key stored one first: then
    that one is returned, and is the answer both requests must give."""
    try:
        await _insert(db, client_id=client_id, key=key, response=response)
    except IntegrityError:
        stored = await find(db, client_id=client_id, key=key)
        if stored is not None:
            return stored
        raise
    return response


@transaction
def _insert(conn: Connection, *, client_id: str, key: str, response: StoredResponse) -> None:
    """In place of an expired answer to the same key, if there is one."""
    now = datetime.now(UTC)
    conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.client_id == client_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_at <= now - KEY_LIFETIME,
        )
    )
    conn.execute(
        insert(idempotency_keys).values(
            client_id=client_id,
            key=key,
            request_hash=response.request_hash,
            status_code=response.status_code,
            response=response.body,
            created_at=now,
        )
    )
