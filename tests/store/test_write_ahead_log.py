"""SQLite's write-ahead log stays bounded while the relay writes without pause: the log is
started over although no checkpoint ever finds it idle, and a file that grew while a reader held
the log is cut back once the reader is done."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection

from app.store.database import WAL_FILE_LIMIT_BYTES, WAL_LIMIT_BYTES, Database, open_database

#: Rows of a transaction, each of a kilobyte: a transaction writes some 30 pages of the log.
ROWS = 100
#: Seconds between two commits: some 20 MB a second, more than the relay writes under load,
#: and a commit during any checkpoint.
PAUSE = 0.005
#: A writer stops after this many times the limit, if it has not seen what it waits for before.
GIVE_UP_AFTER = 20 * WAL_LIMIT_BYTES
#: Starts of the log over to see before the writer stops.
RESTARTS = 3


def _salt(wal: Path) -> bytes:
    """The log header's salts, which change each time the log is started over."""
    with wal.open("rb") as log:
        return log.read(24)[16:24]


def _create(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT)")


def _fill(conn: Connection) -> None:
    conn.exec_driver_sql(
        "INSERT INTO filler (body) VALUES (?)", [("x" * 1000,) for _ in range(ROWS)]
    )
    conn.exec_driver_sql("DELETE FROM filler WHERE id <= (SELECT max(id) FROM filler) - 5000")


async def _write_until(db: Database, done: Callable[[], bool]) -> None:
    """Commit every `PAUSE` seconds until `done()` (looked at after each commit)."""
    written = 0
    async with asyncio.timeout(120):
        while not done() and written < GIVE_UP_AFTER:
            await db.run(_fill)
            written += ROWS * 1000
            await asyncio.sleep(PAUSE)


async def test_the_log_starts_over_while_commits_never_pause(tmp_path: Path) -> None:
    """A passive checkpoint always has commits going on beside it, and never finds the whole
    log copied: only a forced restart starts it over."""
    wal = tmp_path / "relay.db-wal"
    db = open_database(f"sqlite:///{tmp_path / 'relay.db'}")
    salts: list[bytes] = []

    def restarted_enough() -> bool:
        salt = _salt(wal)
        if not salts or salts[-1] != salt:
            salts.append(salt)
        return len(salts) > RESTARTS

    try:
        await db.run(_create)
        await _write_until(db, restarted_enough)
    finally:
        await db.dispose()

    assert len(salts) > RESTARTS, f"the log was started over {len(salts) - 1} times"


async def test_a_log_grown_while_a_reader_held_it_is_cut_back_once_the_reader_is_done(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.db"
    wal = tmp_path / "relay.db-wal"
    db = open_database(f"sqlite:///{path}")
    sizes: list[int] = []

    def grown_past(limit: int) -> Callable[[], bool]:
        def look() -> bool:
            sizes.append(wal.stat().st_size)
            return sizes[-1] > limit

        return look

    def cut_back() -> bool:
        sizes.append(wal.stat().st_size)
        return sizes[-1] <= WAL_FILE_LIMIT_BYTES

    try:
        await db.run(_create)
        await db.run(_fill)
        # An operator's long query: the log cannot start over while it reads.
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM filler").fetchone()
        try:
            await _write_until(db, grown_past(WAL_FILE_LIMIT_BYTES))
        finally:
            reader.rollback()
            reader.close()
        held = max(sizes)
        sizes.clear()
        await _write_until(db, cut_back)
    finally:
        await db.dispose()

    assert held > WAL_FILE_LIMIT_BYTES
    assert sizes[-1] <= WAL_FILE_LIMIT_BYTES, f"the log file stayed at {max(sizes):,} bytes"
