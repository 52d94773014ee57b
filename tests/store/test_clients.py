"""API keys resolve to their client, and a replaced key stops working."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.clients import KnownClients, bootstrap_default_client
from app.store.engine import create_engine, migrate


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


async def test_a_key_resolves_to_its_client_and_a_wrong_one_to_nothing(
    engine: AsyncEngine,
) -> None:
    boot = await bootstrap_default_client(engine, api_key="key-a", signing_secret=None)
    known = KnownClients(engine)

    assert await known.find("key-a") == boot.client
    assert await known.find("key-b") is None


async def test_a_replaced_key_stops_working_once_its_memory_lapses(engine: AsyncEngine) -> None:
    await bootstrap_default_client(engine, api_key="key-a", signing_secret=None)
    remembering = KnownClients(engine, ttl=3600)
    forgetting = KnownClients(engine, ttl=0)
    assert await remembering.find("key-a") is not None
    assert await forgetting.find("key-a") is not None

    await bootstrap_default_client(engine, api_key="key-b", signing_secret=None)

    assert await forgetting.find("key-a") is None
    assert await forgetting.find("key-b") is not None
    assert await remembering.find("key-a") is not None, "within its ttl a key is not re-read"
