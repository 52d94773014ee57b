"""Idempotency keys: a retried POST gets the answer the first one got, for a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.tables import idempotency_keys

KEY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int
    body: str


async def find(engine: AsyncEngine, *, client_id: str, key: str) -> StoredResponse | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response,
                ).where(
                    idempotency_keys.c.client_id == client_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at > datetime.now(UTC) - KEY_LIFETIME,
                )
            )
        ).one_or_none()
    return None if row is None else StoredResponse(*row)


async def save(
    engine: AsyncEngine, *, client_id: str, key: str, response: StoredResponse
) -> StoredResponse:
    """Store the answer, unless a concurrent request with the same key stored one first: then
    that one is returned, and is the answer both requests must give."""
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.client_id == client_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at <= now - KEY_LIFETIME,
                )
            )
            await conn.execute(
                insert(idempotency_keys).values(
                    client_id=client_id,
                    key=key,
                    request_hash=response.request_hash,
                    status_code=response.status_code,
                    response=response.body,
                    created_at=now,
                )
            )
    except IntegrityError:
        stored = await find(engine, client_id=client_id, key=key)
        if stored is not None:
            return stored
        raise
    return response
