"""SQLite's write-ahead log stays bounded while the relay writes without pause: the log is
started over although no checkpoint ever finds it idle, and its file is cut back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import Connection

from app.store.database import WAL_LIMIT_BYTES, open_database

#: Rows of a transaction, each of a kilobyte: a transaction writes some 30 pages of the log.
ROWS = 100
#: Seconds between two commits: some 20 MB a second, more than the relay writes under load,
#: and a commit during any checkpoint.
PAUSE = 0.005
#: The writer stops after this many times the limit, if it has not seen enough before.
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


async def test_the_log_starts_over_and_is_cut_back_while_commits_never_pause(
    tmp_path: Path,
) -> None:
    """Commits come every few milliseconds, as under steady load: a passive checkpoint always
    has commits going on beside it, and never finds the whole log copied."""
    path = tmp_path / "relay.db"
    wal = tmp_path / "relay.db-wal"
    db = open_database(f"sqlite:///{path}")
    written = 0
    salts: list[bytes] = []
    sizes: list[int] = []
    try:
        await db.run(_create)
        async with asyncio.timeout(120):
            while len(salts) <= RESTARTS and written < GIVE_UP_AFTER:
                await db.run(_fill)
                written += ROWS * 1000
                salt = _salt(wal)
                if not salts or salts[-1] != salt:
                    salts.append(salt)
                sizes.append(wal.stat().st_size)
                await asyncio.sleep(PAUSE)
    finally:
        await db.dispose()

    assert len(salts) > RESTARTS, f"the log was started over {len(salts) - 1} times"
    assert max(sizes) > WAL_LIMIT_BYTES
    past_limit = sizes.index(next(size for size in sizes if size > WAL_LIMIT_BYTES))
    assert min(sizes[past_limit:]) <= WAL_LIMIT_BYTES
