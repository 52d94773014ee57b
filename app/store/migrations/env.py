"""Alembic environment: run on the relay's own connection, or on RELAY_DATABASE_URL from the CLI."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text

from app.settings import Settings
from app.store.database import open_database
from app.store.tables import metadata

#: The key of the PostgreSQL advisory lock that migrations take (any 64-bit number of our own).
MIGRATION_LOCK = 0x7265_6C61_795F_6D67


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas deployed together each migrate at their start: on a new database, all at
        # once, and every one but the first would fail creating what another is creating. They
        # take turns instead, holding this lock until their transaction ends; those after the
        # first then find the schema current. (SQLite has one relay per file.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    db = open_database(Settings().database_url)
    try:
        await db.run(_run)
    finally:
        await db.dispose()


_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    asyncio.run(_run_from_settings())
