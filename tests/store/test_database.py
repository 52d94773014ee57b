"""A transaction commits whole or not at all, and the database URLs operators already use open."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, insert, select

from app.encryption import KeyBox
from app.store.client_apps import ClientApps, bootstrap_default_client
from app.store.database import (
    Database,
    Synchronous,
    migrate,
    open_database,
    ping,
    transaction,
)
from app.store.tables import clients
from tests.conftest import ENCRYPTION_KEY

KEY_BOX = KeyBox.from_config(ENCRYPTION_KEY)


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
        boot = await bootstrap_default_client(
            before, api_key="key-a", signing_secret=None, key_box=KEY_BOX
        )
    finally:
        await before.dispose()

    now = open_database(f"sqlite:///{path}")
    try:
        apps = ClientApps(now, key_box=KEY_BOX, secret_overlap=0)
        assert await apps.authenticate("key-a") == boot.client
    finally:
        await now.dispose()


def _checkpoint_threads() -> int:
    return sum(thread.name == "sqlite-checkpoints" for thread in threading.enumerate())


async def test_a_sqlite_file_s_log_is_checkpointed_by_a_thread_of_its_own(tmp_path: Path) -> None:
    """Commits on the event loop never checkpoint the write-ahead log, which waits for the disk;
    a thread does, and stops with the database."""
    path = tmp_path / "relay.db"
    threads = _checkpoint_threads()
    db = open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
        autocheckpoint = await db.run(
            lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        )
        assert autocheckpoint == 0
        checkpointed = path.stat().st_size
        await db.run(lambda conn: conn.execute(insert(clients), _clients(2000)))
        async with asyncio.timeout(5):
            while path.stat().st_size <= checkpointed:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert await _count_clients(db) == 2000
    finally:
        await db.dispose()
    assert _checkpoint_threads() == threads


def _clients(count: int) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {
            "id": f"cli_{i}",
            "name": f"client {i}",
            "api_key_hash": f"hash {i}",
            "signing_secret": "s",
            "created_at": now,
        }
        for i in range(count)
    ]


@pytest.mark.parametrize(("asked", "pragma"), [("normal", 1), ("full", 2)])
async def test_a_sqlite_file_s_commits_wait_for_the_disk_only_when_asked(
    asked: Synchronous, pragma: int, tmp_path: Path
) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'relay.db'}", synchronous=asked)
    try:
        answer = await db.run(lambda conn: conn.exec_driver_sql("PRAGMA synchronous").scalar())
    finally:
        await db.dispose()
    assert answer == pragma
