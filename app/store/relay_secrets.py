"""Secrets the relay makes for itself: made once, shared by every replica through the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from app.store.database import transaction
from app.store.tables import relay_secrets


@transaction
def get_or_create(conn: Connection, *, name: str, make: Callable[[], str]) -> str:
    """The secret `name`; made with `make` if there is none yet. Replicas starting together
    agree on one: the first insert wins, and every one reads back what was stored."""
    insert_ = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert_(relay_secrets)
        .values(name=name, value=make(), created_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
    value: str = conn.execute(
        select(relay_secrets.c.value).where(relay_secrets.c.name == name)
    ).scalar_one()
    return value
