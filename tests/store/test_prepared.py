"""A `Prepared` statement writes exactly what `Connection.execute` would with the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.store.database import Database
from app.store.prepared import Prepared
from app.store.types import UTCDateTime

metadata = MetaData()
jobs = Table(
    "prepared_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("state", String(16), nullable=False, server_default=text("'new'")),
    Column("score", Float, nullable=True),
    Column("runs", Integer, nullable=False, server_default=text("0")),
    Column("note", String(40), nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=True),
)

NOW = datetime(2026, 11, 29, 9, 30, 0, 123456, tzinfo=UTC)
ELSEWHERE = timezone(timedelta(hours=-5))

#: Constants of its own (a literal state in the condition, a NULL, a counter's step) and a
#: parameter used twice, as the relay's write-backs have.
START = (
    update(jobs)
    .where(jobs.c.name == bindparam("b_name"), jobs.c.state == "new")
    .values(
        state="running",
        score=bindparam("b_score"),
        runs=jobs.c.runs + 1,
        note=None,
        started_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
)


async def _table(db: Database, names: list[str]) -> None:
    def create(conn: Connection) -> None:
        metadata.create_all(conn)
        if names:
            conn.execute(insert(jobs), [{"name": name, "note": "waiting"} for name in names])

    await db.run(create)


async def _rows(db: Database) -> list[tuple[Any, ...]]:
    def read(conn: Connection) -> list[tuple[Any, ...]]:
        columns = [column for column in jobs.c if column.name != "id"]
        return [tuple(row) for row in conn.execute(select(*columns).order_by(jobs.c.name))]

    return await db.run(read)


def _starts(names: list[str]) -> list[dict[str, Any]]:
    return [
        {"b_name": name, "b_score": 0.5 + i, "b_now": NOW.astimezone(ELSEWHERE)}
        for i, name in enumerate(names)
    ]


async def test_an_update_writes_what_sqlalchemy_writes(db: Database) -> None:
    await _table(db, ["a1", "a2", "b1", "b2", "c1"])
    prepared = Prepared(START)

    await db.run(lambda conn: conn.execute(START, _starts(["a1", "a2"])))
    await db.run(lambda conn: prepared.executemany(conn, _starts(["b1", "b2"])))

    rows = await _rows(db)
    assert [row[1:] for row in rows[2:4]] == [row[1:] for row in rows[:2]]
    assert rows[2] == ("b1", "running", 0.5, 1, None, NOW, NOW)
    assert rows[4] == ("c1", "new", None, 0, "waiting", None, None)


async def test_the_statement_s_own_condition_still_holds(db: Database) -> None:
    await _table(db, ["a1"])
    prepared = Prepared(START)

    await db.run(lambda conn: prepared.executemany(conn, _starts(["a1"])))
    await db.run(lambda conn: prepared.executemany(conn, _starts(["a1"])))

    assert (await _rows(db))[0][3] == 1, "run once: the second found it no longer new"


async def test_an_insert_names_its_columns_by_the_rows_keys(db: Database) -> None:
    await _table(db, [])
    prepared = Prepared(insert(jobs))

    await db.run(
        lambda conn: prepared.executemany(
            conn, [{"name": f"n{i}", "score": float(i), "started_at": NOW} for i in range(3)]
        )
    )

    rows = await _rows(db)
    assert rows == [(f"n{i}", "new", float(i), 0, None, NOW, None) for i in range(3)]


async def test_driver_errors_are_sqlalchemy_s(db: Database) -> None:
    await _table(db, ["taken"])
    prepared = Prepared(insert(jobs))

    with pytest.raises(IntegrityError):
        await db.run(lambda conn: prepared.executemany(conn, [{"name": "taken"}]))

    assert [row[0] for row in await _rows(db)] == ["taken"]


async def test_no_rows_run_nothing(db: Database) -> None:
    await _table(db, ["a1"])

    await db.run(lambda conn: Prepared(START).executemany(conn, []))

    assert (await _rows(db))[0][1] == "new"


async def test_a_row_without_a_required_value_is_refused(db: Database) -> None:
    await _table(db, ["a1"])

    with pytest.raises(KeyError, match="b_score"):
        await db.run(
            lambda conn: Prepared(START).executemany(conn, [{"b_name": "a1", "b_now": NOW}])
        )


def test_statements_that_return_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="RETURNING"):
        Prepared(update(jobs).values(score=bindparam("b_score")).returning(jobs.c.id))


def test_a_driver_taking_named_parameters_gets_the_statement_as_sqlalchemy_runs_it(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'named.db'}", paramstyle="named")
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(insert(jobs), [{"name": "a1"}, {"name": "a2"}])
            Prepared(START).executemany(conn, _starts(["a1", "a2"]))
            started = conn.execute(select(jobs.c.name, jobs.c.runs, jobs.c.started_at)).all()
    finally:
        engine.dispose()

    assert sorted(started) == [("a1", 1, NOW), ("a2", 1, NOW)]
