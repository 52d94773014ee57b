"""Alembic environment: run on the relay's own connection, or on RELAY_DATABASE_URL from the CLI."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from app.settings import Settings
from app.store.engine import create_engine
from app.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    engine = create_engine(Settings().database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    asyncio.run(_run_from_settings())
