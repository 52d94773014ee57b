"""UTCDateTime: aware UTC datetimes in and out; on SQLite, the text SQLAlchemy always stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    Table,
    create_engine,
    select,
    text,
)
from sqlalchemy.exc import StatementError

from app.store.types import UTCDateTime

metadata = MetaData()
times = Table(
    "times",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=True),
)
PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///{tmp_path / 'types.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        yield conn
    engine.dispose()


def stored_text(conn: Connection, row_id: int) -> str:
    return str(conn.execute(text("SELECT at FROM times WHERE id = :id"), {"id": row_id}).scalar())


def test_a_datetime_comes_back_aware_and_in_utc(conn: Connection) -> None:
    at = datetime(2026, 11, 28, 10, 30, 0, 250, tzinfo=PARIS_WINTER)
    conn.execute(times.insert().values(id=1, at=at))

    read = conn.execute(select(times.c.at)).scalar_one()

    assert read == at
    assert read.tzinfo is UTC
    assert read.hour == 9


def test_sqlite_stores_the_text_sqlalchemy_stores_so_older_files_compare_alike(
    conn: Connection,
) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    conn.execute(times.insert().values(id=1, at=at))

    sqlalchemy_text = DateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
    assert sqlalchemy_text is not None
    assert stored_text(conn, 1) == sqlalchemy_text(at.replace(tzinfo=None))
    assert stored_text(conn, 1) == "2026-01-02 03:04:05.000006"


def test_rows_written_by_sqlalchemys_own_format_are_found_by_comparison(
    conn: Connection,
) -> None:
    conn.execute(text("INSERT INTO times (id, at) VALUES (1, '2026-01-02 03:04:05.000000')"))
    conn.execute(text("INSERT INTO times (id, at) VALUES (2, '2026-01-02 03:04:06.000000')"))

    cutoff = datetime(2026, 1, 2, 4, 4, 5, 500_000, tzinfo=PARIS_WINTER)
    earlier = conn.execute(select(times.c.id).where(times.c.at < cutoff)).scalars().all()

    assert earlier == [1]


def test_none_stays_none(conn: Connection) -> None:
    conn.execute(times.insert().values(id=1, at=None))
    assert conn.execute(select(times.c.at)).scalar_one() is None


def test_a_naive_datetime_is_refused(conn: Connection) -> None:
    with pytest.raises(StatementError, match="naive datetimes are ambiguous"):
        conn.execute(times.insert().values(id=1, at=datetime(2026, 1, 1)))
