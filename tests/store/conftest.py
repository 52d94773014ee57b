"""The store's own tests work on a migrated database of each kind, without a relay around it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.store.database import Database, migrate, open_database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    db = open_database(database_url)
    await migrate(db)
    yield db
    await db.dispose()
