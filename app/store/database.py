"""Where the store's transactions run, and bringing the schema up to date.

The store's queries are plain functions of a SQLAlchemy `Connection`, each one transaction
(`transaction`); a `Database` runs them where its driver does best:

- SQLite, in the event loop's own thread, a whole transaction at a time. SQLite is a library,
  not a server: a statement of the relay's (indexed, batched) takes less time than handing it to
  another thread and back, and in WAL mode with `synchronous=NORMAL` a commit does not wait for
  the disk. docs/performance.md has the figures, and what was tried first.
  The one exception is the checkpoint, which copies the write-ahead log back into the database
  file and waits for the disk: the relay's connection never runs it (SQLite would, in whichever
  commit takes the log past 4 MB, stalling the event loop), a thread of its own does, on a
  connection of its own, once a second (`_Checkpoints`).
- PostgreSQL, on the event loop through asyncpg, as SQLAlchemy's asyncio extension runs
  synchronous code (`AsyncConnection.run_sync`): waiting on the server never blocks the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: Seconds between two checkpoints of a SQLite file's write-ahead log.
CHECKPOINT_INTERVAL = 1.0
#: Past this size the write-ahead log is started over by force (`_Checkpoints`).
WAL_LIMIT_BYTES = 16 * 1024 * 1024
#: A log file grown past this size (a long reader held the restarts off) is cut back to it when
#: the log starts over. Not at `WAL_LIMIT_BYTES`: cutting the file at every restart cost the
#: commit that did it 8-10 ms, on the event loop.
WAL_FILE_LIMIT_BYTES = 4 * WAL_LIMIT_BYTES
#: How long a forced restart of the log waits for another process's writer, then for readers
#: (an operator's shell), holding writers back meanwhile.
RESTART_WAIT = 0.1
#: How often a transaction held back by a forced restart of the log looks whether it has ended.
RESTART_LOOK = 0.001

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class Database(ABC):
    @abstractmethod
    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work` as one transaction: committed if it returns, rolled back if it raises."""

    @abstractmethod
    async def dispose(self) -> None:
        """Close every connection."""


#: How a SQLite commit meets the disk (`RELAY_SQLITE_SYNCHRONOUS`), as SQLite's PRAGMA names it.
Synchronous = Literal["normal", "full"]
_SYNCHRONOUS_PRAGMAS: dict[Synchronous, str] = {"normal": "NORMAL", "full": "FULL"}


def open_database(url: str, *, synchronous: Synchronous = "normal") -> Database:
    """Accept the plain URLs operators copy around (`postgresql://…`, `sqlite:///…`) and pick
    the driver. SQLite always gets Python's own, whatever driver the URL names, so that a URL
    written for another driver (`sqlite+aiosqlite://`) still opens.

    :param synchronous: SQLite's only. `normal`: a commit is written to the write-ahead log and
        reaches the disk at the next checkpoint, within about a second, so a killed process
        loses nothing but a power cut can lose the last commits. `full`: every commit waits
        until the log is on disk, and a power cut loses none, at the cost of a disk flush each
        (docs/durability.md).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sqlite = parsed.set(drivername="sqlite+pysqlite")
        return _SQLite(sqlite.render_as_string(hide_password=False), synchronous=synchronous)
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


class _SQLite(Database):
    """One connection for the whole process, used in the event loop's thread.

    SQLite lets one writer in at a time, and a transaction here runs start to end without giving
    the loop back, so one connection serves every transaction in turn and none ever waits for
    another. What can still hold the loop is another process writing the same file (SQLite's busy
    timeout): several replicas belong on PostgreSQL.

    A forced restart of the write-ahead log (`_Checkpoints`) holds writers back for a few
    milliseconds. A transaction waiting for it inside SQLite would stop the event loop for that
    long, and more: SQLite's busy handler sleeps 1, 2, 5, then 10 ms between looks. The two take
    turns through `_turns` instead: a transaction that finds a restart going on waits for it on
    the loop, which runs on meanwhile.
    """

    def __init__(self, url: str, *, synchronous: Synchronous) -> None:
        self._engine: Engine = create_sync_engine(url, pool_size=1, max_overflow=0)
        event.listen(
            self._engine, "connect", functools.partial(_tune_sqlite, synchronous=synchronous)
        )
        self._turns = threading.Lock()
        self._checkpoints = _Checkpoints(make_url(url).database or "", turns=self._turns)

    async def run(self, work: Callable[[Connection], T]) -> T:
        # The lock is another thread's to let go of: no event of the loop's own tells when.
        while not self._turns.acquire(blocking=False):  # noqa: ASYNC110
            await asyncio.sleep(RESTART_LOOK)
        try:
            with self._engine.begin() as conn:
                return work(conn)
        finally:
            self._turns.release()

    async def dispose(self) -> None:
        self._checkpoints.stop()
        self._engine.dispose()


class _Checkpoints(threading.Thread):
    """Checkpoints a SQLite file's write-ahead log once a second, off the event loop.

    `PASSIVE`: it copies what no reader still needs and never makes a writer wait. The `sqlite3`
    module lets go of the GIL while SQLite works, so the event loop runs on meanwhile.

    The log is started over (written again from its beginning) only by a writer that finds all
    of it copied, and a passive checkpoint copies the log as it was when it began: under steady
    load the relay commits while every checkpoint runs, the log is never all copied, and it
    grows without end (hundreds of MB in ten minutes at 5,000 active watches). So once it holds
    more than `WAL_LIMIT_BYTES`, a `RESTART` checkpoint follows the passive one: it holds the
    writer back while it copies the little written since, and the next commit starts the log
    over (a file grown past `WAL_FILE_LIMIT_BYTES` cut back to it). It takes its turn with the
    relay's transactions (`turns`), and waits `RESTART_WAIT` at most for another process's writer
    and for readers, else it tries again a second later. While a reader of another process holds
    part of the log uncopied (a long query in an operator's shell, a backup), no restart could
    finish and none is tried. docs/retention.md has the measurements.
    """

    def __init__(self, path: str, *, turns: threading.Lock) -> None:
        super().__init__(name="sqlite-checkpoints", daemon=True)
        self._path = path
        self._turns = turns
        self._stopping = threading.Event()
        self.start()

    def run(self) -> None:
        connection: sqlite3.Connection | None = None
        while not self._stopping.wait(CHECKPOINT_INTERVAL):
            try:
                # Not created here: until the relay's connection has made the file, wait.
                uri = Path(self._path).resolve().as_uri() + "?mode=rw"
                connection = connection or sqlite3.connect(uri, uri=True, timeout=RESTART_WAIT)
                _, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                # Part of it left uncopied: a reader holds it, and would hold a restart up too.
                if copied == frames and frames * _page_size(connection) > WAL_LIMIT_BYTES:
                    with self._turns:
                        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error as exc:
                log.debug("checkpoint of %s not done: %s", self._path, exc)
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def _page_size(connection: sqlite3.Connection) -> int:
    """A log frame is a page (and a header of 24 bytes)."""
    size: int = connection.execute("PRAGMA page_size").fetchone()[0]
    return size


class _AsyncDriver(Database):
    def __init__(self, url: str) -> None:
        self._engine = create_async_engine(url, pool_pre_ping=True)

    async def run(self, work: Callable[[Connection], T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(work)

    async def dispose(self) -> None:
        await self._engine.dispose()


def _tune_sqlite(dbapi_connection: Any, _record: Any, *, synchronous: Synchronous) -> None:
    """WAL lets other readers (a backup, an operator's `sqlite3` shell) proceed while the relay
    writes; the busy timeout absorbs another process's short write (a migration run by hand).
    Commits leave checkpoints to `_Checkpoints`. A new file is made able to give the space of
    deleted rows back (`retention.give_space_back`), which must be chosen before the file holds
    anything, switching to WAL included."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={_SYNCHRONOUS_PRAGMAS[synchronous]}")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_FILE_LIMIT_BYTES}")
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


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against the migrations of this version."""

    #: The revision the database is at; None before the first migration.
    current: str | None
    #: The revision this version needs.
    latest: str
    #: Whether this version knows `current`: a newer version may have migrated past it.
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.latest


@transaction
def schema_state(conn: Connection) -> SchemaState:
    """Read without writing: the database may be one a relay is using."""
    scripts = ScriptDirectory.from_config(alembic_config())
    current = MigrationContext.configure(conn).get_current_revision()
    latest = scripts.get_current_head()
    if latest is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    known = current is None or current in {script.revision for script in scripts.walk_revisions()}
    return SchemaState(current, latest, known)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database or another server."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@transaction
def erase_replaced_data(conn: Connection) -> None:
    """Leave no copy on disk of what updates replaced, after secrets once stored in clear were
    encrypted (at most once: `client_apps.encrypt_secrets_in_clear`).

    SQLite keeps what an update replaced in the free space of the file's pages and in the
    write-ahead log until something overwrites it: the file is rewritten (`VACUUM`, outside any
    transaction, which this connection opens only for a write) and the log emptied. PostgreSQL
    keeps old row versions until its own vacuum, out of the relay's reach.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("VACUUM")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@transaction
def ping(conn: Connection) -> None:
    """Whether the database answers (readiness)."""
    conn.execute(text("SELECT 1"))
