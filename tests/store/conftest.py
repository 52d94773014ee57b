"""The store's own tests work on a migrated database of each kind, without a relay around it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.encryption import KeyBox
from app.store import client_apps
from app.store.database import Database, migrate, open_database
from tests.conftest import ENCRYPTION_KEY


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    db = open_database(database_url)
    await migrate(db)
    yield db
    await db.dispose()


@pytest.fixture
async def client_id(db: Database) -> str:
    """The id of the client app the relay makes at its first start, owner of the test's rows."""
    boot = await client_apps.bootstrap_default_client(
        db, api_key="rk_store", signing_secret=None, key_box=KeyBox.from_config(ENCRYPTION_KEY)
    )
    return boot.client.id
