"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, column, insert, inspect, select, table

from app.store.database import alembic_config, migrate, open_database
from app.store.tables import clients, metadata, watches


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrating_a_new_database_creates_the_declared_schema(database_url: str) -> None:
    db = open_database(database_url)
    try:
        await migrate(db)
        assert await db.run(_differences) == []
    finally:
        await db.dispose()


async def test_migrating_twice_is_harmless(database_url: str) -> None:
    db = open_database(database_url)
    try:
        await migrate(db)
        await migrate(db)
        tables = await db.run(lambda c: set(inspect(c).get_table_names()))
        assert {"clients", "watches", "events", "attempts", "alembic_version"} <= tables
    finally:
        await db.dispose()


async def test_watches_from_before_deadlines_get_the_default_one(database_url: str) -> None:
    created = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    old_watch = {
        "id": "wat_1",
        "client_id": "cli_1",
        "task_id": "video_1",
        "callback_url": "https://example.com/h",
        "state": "active",
        "created_at": created,
        "updated_at": created,
    }
    # Only the columns of revision 0001.
    old_table = table("watches", *(column(name, watches.c[name].type) for name in old_watch))

    def at_revision_0001(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            insert(clients).values(
                id="cli_1", name="default", api_key_hash="h", signing_secret="s", created_at=created
            )
        )
        connection.execute(insert(old_table), old_watch)

    db = open_database(database_url)
    try:
        await db.run(at_revision_0001)
        await migrate(db)
        row = await db.run(lambda connection: connection.execute(select(watches)).one())
    finally:
        await db.dispose()
    assert row.deadline_at == created + timedelta(hours=24)
    assert row.consecutive_errors == 0
    assert row.upstream_api_key_encrypted is None
