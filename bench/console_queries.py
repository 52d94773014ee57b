"""The statements a console request costs the relay, recorded as they reach the database.

On SQLite they are taken from the driver (its trace callback), below SQLAlchemy, so that the
statements the store sends straight to `sqlite3` (the key lookup every request makes) count too;
on PostgreSQL every statement of the store goes through SQLAlchemy, and is taken there. A
statement counts for a request when it was sent from the request's own task: the relay's
background work runs on tasks of its own. Transaction control (BEGIN, COMMIT) is not a query;
transactions are counted apart.

Afterwards each statement is run again alone, on a connection of its own, for the time it takes
the database (`time_alone`), and `print_plans` shows how the database runs it.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry, Pool

from app.store.database import sqlite_file

T = TypeVar("T")
#: Runs of each statement when it is timed alone; the median is kept.
RUNS = 15
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    #: The driver's parameters; SQLite's statements come with their values written in.
    parameters: Sequence[Any] = ()


@dataclass(slots=True)
class Recorded:
    statements: list[Statement] = field(default_factory=list)
    transactions: int = 0


_recording: contextvars.ContextVar[Recorded | None] = contextvars.ContextVar(
    "recording", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Engines and their connections made from now on report to `recorded`."""

    def connected(dbapi_connection: Any, _entry: ConnectionPoolEntry) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(_traced)

    def executing(conn: Connection, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        found = _recording.get()
        if found is not None and conn.dialect.name != "sqlite":
            found.statements.append(Statement(sql, tuple(parameters or ())))

    def began(_conn: Connection) -> None:
        found = _recording.get()
        if found is not None:
            found.transactions += 1

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (Pool, "connect", connected),
        (Engine, "before_cursor_execute", executing),
        (Engine, "begin", began),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def _traced(sql: str) -> None:
    found = _recording.get()
    if found is not None and not sql.lstrip().upper().startswith(_CONTROL):
        found.statements.append(Statement(sql))


async def recorded(request: Callable[[], Awaitable[T]]) -> tuple[T, Recorded]:
    """What `request` returns, and the statements it cost."""
    found = Recorded()
    token = _recording.set(found)
    try:
        return await request(), found
    finally:
        _recording.reset(token)


@contextlib.asynccontextmanager
async def postgres(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the database of a SQLAlchemy URL."""
    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        yield connection
    finally:
        await connection.close()


class _Direct:
    """Statements run on a connection of the harness's own, to SQLite or PostgreSQL."""

    def __init__(self, sqlite: sqlite3.Connection | None, pg: asyncpg.Connection | None) -> None:
        self._sqlite = sqlite
        self._pg = pg

    async def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Sequence[Any]]:
        if self._sqlite is not None:
            return list(self._sqlite.execute(sql, tuple(parameters)).fetchall())
        assert self._pg is not None
        return [tuple(row.values()) for row in await self._pg.fetch(sql, *parameters)]


@contextlib.asynccontextmanager
async def _direct(url: str) -> AsyncIterator[_Direct]:
    path = sqlite_file(url)
    if path is not None:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            yield _Direct(connection, None)
        finally:
            connection.close()
        return
    async with postgres(url) as pg:
        yield _Direct(None, pg)


async def time_alone(url: str, statements: Sequence[Statement]) -> float:
    """Seconds the database takes for `statements`, each run alone (the median of `RUNS`)."""
    total = 0.0
    async with _direct(url) as direct:
        for statement in statements:
            runs = []
            for _ in range(RUNS):
                started = time.perf_counter()
                await direct.rows(statement.sql, statement.parameters)
                runs.append(time.perf_counter() - started)
            total += statistics.median(runs)
    return total


async def print_plans(url: str, found: dict[str, Recorded]) -> None:
    """SQLite's query plan of every statement, or PostgreSQL's with the time each step took."""
    sqlite = sqlite_file(url) is not None
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    async with _direct(url) as direct:
        for label, record in found.items():
            print(f"\n== Plans: {label}")
            for statement in record.statements:
                print(f"\n  {' '.join(statement.sql.split())}")
                if statement.parameters:
                    print(f"  parameters: {list(statement.parameters)}")
                for row in await direct.rows(prefix + statement.sql, statement.parameters):
                    print(f"    {row[-1]}")
