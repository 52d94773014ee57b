"""A transaction commits whole or not at all, and the database URLs operators already use open."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, insert, select

from app.store.clients import KnownClients, bootstrap_default_client
from app.store.database import Database, migrate, open_database, ping, transaction
from app.store.tables import clients


class Refused(Exception):
    pass


@transaction
def _add_client_then_fail(conn: Connection, name: str) -> None:
    conn.execute(
        insert(clients).values(
            id=f"cli_{name}",
            name=name,
            api_key_hash=name,
            signing_secret="s",
            created_at=datetime.now(UTC),
        )
    )
    raise Refused


@transaction
def _count_clients(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(clients)).scalar_one()


async def test_a_transaction_that_raises_leaves_nothing_behind(db: Database) -> None:
    before = await _count_clients(db)

    with pytest.raises(Refused):
        await _add_client_then_fail(db, "half-made")

    assert await _count_clients(db) == before


async def test_the_database_answers_when_it_is_up(db: Database) -> None:
    await ping(db)


async def test_a_url_naming_the_former_default_driver_opens_the_same_sqlite_file(
    tmp_path: Path,
) -> None:
    """`sqlite+aiosqlite://` was the default once, and may be in operators' configuration."""
    path = tmp_path / "relay.db"
    before = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(before)
        boot = await bootstrap_default_client(before, api_key="key-a", signing_secret=None)
    finally:
        await before.dispose()

    now = open_database(f"sqlite:///{path}")
    try:
        assert await KnownClients(now).find("key-a") == boot.client
    finally:
        await now.dispose()
