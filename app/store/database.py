"""Where the store's transactions run, and bringing the schema up to date.

The store's queries are plain functions of a SQLAlchemy `Connection`, each one transaction
(`transaction`); a `Database` runs them where its driver does best:

- SQLite, on a thread of its own, a whole transaction at a time. An asyncio driver for SQLite
  (aiosqlite, which the relay used before) hands every cursor call to its thread and back:
  four round trips per statement, each a pair of thread wake-ups. Measured here, a statement
  cost about 380 µs of CPU that way against 45 µs in one go, and claiming ten watches 1.2 ms,
  most of a poll's share of the database. Now each transaction costs one round trip.
- PostgreSQL, on the event loop through asyncpg, as SQLAlchemy's asyncio extension runs
  synchronous code (`AsyncConnection.run_sync`): nothing waits on a thread there.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"

T = TypeVar("T")
P = ParamSpec("P")


class Database(ABC):
    @abstractmethod
    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work` as one transaction: committed if it returns, rolled back if it raises."""

    @abstractmethod
    async def dispose(self) -> None:
        """Close every connection."""


def open_database(url: str) -> Database:
    """Accept the plain URLs operators copy around (`postgresql://…`, `sqlite:///…`) and pick
    the driver. SQLite always gets Python's own, whatever driver the URL names
    (`sqlite+aiosqlite://` was the default once)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sqlite = parsed.set(drivername="sqlite+pysqlite")
        return _ThreadedSQLite(sqlite.render_as_string(hide_password=False))
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return _AsyncDriver(parsed.render_as_string(hide_password=False))


def transaction(
    work: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Database, P], Coroutine[Any, Any, T]]:
    """Make a query function of a `Connection` a coroutine function of a `Database`, which runs
    it as one transaction: `await claim_due_watches(db, owner=…)`."""

    @functools.wraps(work)
    async def run(db: Database, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await db.run(lambda conn: work(conn, *args, **kwargs))

    return run


class _ThreadedSQLite(Database):
    """One connection on one thread for the whole process.

    SQLite lets one writer in at a time; with several connections, each waiting writer sleeps in
    SQLite's busy handler. One thread turns the contention into a queue of transactions, served
    in order, and keeps SQLite's waits (the busy timeout, a checkpoint's writes) off the event
    loop. A transaction whose caller is cancelled still runs to its end: the store's writes are
    all safe to have happened unseen (a claimed row's lease runs out, a watch written for a
    client who went away is found by the registration it retries with).
    """

    def __init__(self, url: str) -> None:
        self._engine: Engine = create_sync_engine(url, pool_size=1, max_overflow=0)
        event.listen(self._engine, "connect", _tune_sqlite)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def run(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._in_transaction, work)

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        with self._engine.begin() as conn:
            return work(conn)

    async def dispose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown()


class _AsyncDriver(Database):
    def __init__(self, url: str) -> None:
        self._engine = create_async_engine(url, pool_pre_ping=True)

    async def run(self, work: Callable[[Connection], T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(work)

    async def dispose(self) -> None:
        await self._engine.dispose()


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers proceed while a write is under way; the busy timeout absorbs other
    processes' writes (a second relay on the same file, a migration from the command line)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@transaction
def migrate(conn: Connection) -> None:
    """Upgrade to the latest schema at start, so a new version needs no separate step."""
    command.upgrade(alembic_config(conn), "head")


@transaction
def ping(conn: Connection) -> None:
    """Whether the database answers (readiness)."""
    conn.execute(text("SELECT 1"))
