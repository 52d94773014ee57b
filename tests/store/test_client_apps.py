"""API keys resolve to their client, and a replaced key stops working."""

from __future__ import annotations

from app.store.client_apps import KnownClients, bootstrap_default_client
from app.store.database import Database


async def test_a_key_resolves_to_its_client_and_a_wrong_one_to_nothing(
    db: Database,
) -> None:
    boot = await bootstrap_default_client(db, api_key="key-a", signing_secret=None)
    known = KnownClients(db)

    assert await known.find("key-a") == boot.client
    assert await known.find("key-b") is None


async def test_a_replaced_key_stops_working_once_its_memory_lapses(db: Database) -> None:
    await bootstrap_default_client(db, api_key="key-a", signing_secret=None)
    remembering = KnownClients(db, ttl=3600)
    forgetting = KnownClients(db, ttl=0)
    assert await remembering.find("key-a") is not None
    assert await forgetting.find("key-a") is not None

    await bootstrap_default_client(db, api_key="key-b", signing_secret=None)

    assert await forgetting.find("key-a") is None
    assert await forgetting.find("key-b") is not None
    assert await remembering.find("key-a") is not None, "within its ttl a key is not re-read"
