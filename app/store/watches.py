"""Reading and changing watches on behalf of the API; every query is scoped to one client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app import events as webhook_events
from app.ids import new_id
from app.states import EventState, WatchState
from app.store.batching import Batcher
from app.store.database import Database, transaction
from app.store.tables import attempts, events, watches

_LIVE = (WatchState.ACTIVE, WatchState.NOTIFYING)
_ENDED = (WatchState.NOTIFYING, WatchState.COMPLETED, WatchState.FAILED)


@dataclass(frozen=True, slots=True)
class EventSummary:
    id: str
    type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Watch:
    id: str
    task_id: str
    callback_url: str
    metadata: Any
    events: list[str]
    state: str
    task_status: str | None
    upstream_status: str | None
    progress: float | None
    poll_count: int
    last_polled_at: datetime | None
    last_poll_error: str | None
    poll_interval: float | None
    deadline_at: datetime
    created_at: datetime
    updated_at: datetime
    event: EventSummary | None


@dataclass(frozen=True, slots=True)
class Attempt:
    event_id: str
    event_type: str
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    next_attempt_at: datetime | None


class WrongState(Exception):
    """The watch exists but is not in a state that allows the operation."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


_WATCH_COLUMNS = [
    watches.c.id,
    watches.c.task_id,
    watches.c.callback_url,
    watches.c.metadata,
    watches.c.event_types.label("events"),
    watches.c.state,
    watches.c.task_status,
    watches.c.upstream_status,
    watches.c.progress,
    watches.c.poll_count,
    watches.c.last_polled_at,
    watches.c.last_poll_error,
    watches.c.poll_interval,
    watches.c.deadline_at,
    watches.c.created_at,
    watches.c.updated_at,
]
_EVENT_COLUMNS = [
    events.c.id,
    events.c.type,
    events.c.state,
    events.c.attempts,
    events.c.next_attempt_at,
    events.c.last_status_code,
    events.c.last_error,
    events.c.delivered_at,
]


class Registrations:
    """Writes new watches; registrations that arrive together share one statement (group commit).

    They go in as one `INSERT … ON CONFLICT DO NOTHING`: the unique index on live registrations
    decides duplicates, so two racing registrations of the same task and callback, in one batch or
    not, still yield one watch.

    A new watch is first polled one interval after it was registered, not at once: apps register
    a task as soon as they have submitted it, when it is still queued, so a poll at once would
    only learn that, at the cost of a request, on the path of every registration.

    :param poll_interval: the interval of watches that set none.
    """

    def __init__(self, db: Database, *, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._batcher: Batcher[dict[str, Any], bool] = Batcher(self._write)

    async def register(
        self,
        *,
        client_id: str,
        task_id: str,
        callback_url: str,
        metadata: Any,
        expires_after: float,
        event_types: list[str] | None = None,
        poll_interval: float | None = None,
        upstream_api_key_encrypted: str | None = None,
    ) -> tuple[Watch, bool]:
        """Create a watch, or return the live one for the same task and callback (`created`
        False). The watch ends with `watch.expired` if its task has not ended `expires_after`
        seconds from now."""
        now = datetime.now(UTC)
        watch = Watch(
            id=new_id("wat"),
            task_id=task_id,
            callback_url=callback_url,
            metadata=metadata,
            events=event_types or list(webhook_events.DEFAULT_SUBSCRIPTION),
            state=WatchState.ACTIVE,
            task_status=None,
            upstream_status=None,
            progress=None,
            poll_count=0,
            last_polled_at=None,
            last_poll_error=None,
            poll_interval=poll_interval,
            deadline_at=now + timedelta(seconds=expires_after),
            created_at=now,
            updated_at=now,
            event=None,
        )
        row = {
            "id": watch.id,
            "client_id": client_id,
            "task_id": task_id,
            "callback_url": callback_url,
            "metadata": metadata,
            "event_types": event_types,
            "state": watch.state,
            "poll_count": 0,
            "next_poll_at": now + timedelta(seconds=poll_interval or self._poll_interval),
            "poll_interval": poll_interval,
            "deadline_at": watch.deadline_at,
            "upstream_api_key_encrypted": upstream_api_key_encrypted,
            "created_at": now,
            "updated_at": now,
        }
        if await self._batcher.submit(row):
            return watch, True  # as written: reading it back would only cost a round trip
        live = await _live_watch(
            self._db, client_id=client_id, task_id=task_id, callback_url=callback_url
        )
        return live, False

    async def _write(self, rows: Sequence[dict[str, Any]]) -> list[bool]:
        """Which rows went in (False: a live watch for the same task and callback exists)."""
        inserted = await _insert_new(self._db, rows)
        return [row["id"] in inserted for row in rows]


@transaction
def _insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    insert_ = (
        postgresql.insert(watches) if conn.dialect.name == "postgresql" else sqlite.insert(watches)
    )
    statement = insert_.on_conflict_do_nothing().returning(watches.c.id)
    return set(conn.execute(statement, list(rows)).scalars())


@transaction
def _live_watch(conn: Connection, *, client_id: str, task_id: str, callback_url: str) -> Watch:
    existing = conn.execute(
        select(*_WATCH_COLUMNS).where(
            watches.c.client_id == client_id,
            watches.c.task_id == task_id,
            watches.c.callback_url == callback_url,
            watches.c.state != WatchState.CANCELLED,
        )
    ).one()
    return _with_events(conn, [existing])[0]


@transaction
def get(conn: Connection, *, client_id: str, watch_id: str) -> Watch | None:
    return _read(conn, client_id, watch_id)


def _read(conn: Connection, client_id: str, watch_id: str) -> Watch | None:
    row = conn.execute(
        select(*_WATCH_COLUMNS).where(watches.c.client_id == client_id, watches.c.id == watch_id)
    ).one_or_none()
    return None if row is None else _with_events(conn, [row])[0]


@transaction
def page(
    conn: Connection,
    *,
    client_id: str,
    limit: int,
    before: str | None = None,
    state: WatchState | None = None,
    task_id: str | None = None,
) -> list[Watch]:
    """Newest first; ids are time-ordered, so `before` (the last id seen) is a stable cursor."""
    query = select(*_WATCH_COLUMNS).where(watches.c.client_id == client_id)
    if before is not None:
        query = query.where(watches.c.id < before)
    if state is not None:
        query = query.where(watches.c.state == state)
    if task_id is not None:
        query = query.where(watches.c.task_id == task_id)
    query = query.order_by(watches.c.id.desc()).limit(limit)
    return _with_events(conn, conn.execute(query).all())


@transaction
def cancel(conn: Connection, *, client_id: str, watch_id: str) -> Watch | None:
    """Stop polling and withdraw any undelivered webhook, in one transaction.

    Cancelling twice is harmless; cancelling a watch whose webhook was already delivered or
    dead-lettered raises `WrongState`, since nothing is left to stop.
    """
    now = datetime.now(UTC)
    changed = conn.execute(
        update(watches)
        .where(
            watches.c.client_id == client_id,
            watches.c.id == watch_id,
            watches.c.state.in_(_LIVE),
        )
        .values(state=WatchState.CANCELLED, lease_owner=None, updated_at=now)
    )
    if changed.rowcount:
        conn.execute(
            update(events)
            .where(events.c.watch_id == watch_id, events.c.state == EventState.PENDING)
            .values(state=EventState.CANCELLED, next_attempt_at=None)
        )
    watch = _read(conn, client_id, watch_id)
    if watch is not None and watch.state != WatchState.CANCELLED:
        raise WrongState(watch.state)
    return watch


@transaction
def redeliver(conn: Connection, *, client_id: str, watch_id: str) -> Watch | None:
    """Queue the watch's final event to be sent again now, as a new round of the schedule.

    The event keeps its id and body: to the receiver, a redelivery is just another delivery.
    """
    now = datetime.now(UTC)
    terminal = conn.execute(
        select(events.c.id)
        .join(watches, watches.c.id == events.c.watch_id)
        .where(
            watches.c.client_id == client_id,
            watches.c.id == watch_id,
            watches.c.state.in_(_ENDED),
            events.c.type.in_(webhook_events.TERMINAL),
        )
    ).scalar_one_or_none()
    if terminal is not None:
        conn.execute(update(events).where(events.c.id == terminal).values(**_requeued(now)))
        conn.execute(
            update(watches)
            .where(watches.c.id == watch_id)
            .values(state=WatchState.NOTIFYING, updated_at=now)
        )
    watch = _read(conn, client_id, watch_id)
    if watch is not None and terminal is None:
        raise WrongState(watch.state)
    return watch


@transaction
def recover(conn: Connection, *, client_id: str, since: datetime) -> int:
    """Queue again every event of the client that was given up on since `since`."""
    now = datetime.now(UTC)
    requeued = conn.execute(
        update(events)
        .where(
            events.c.client_id == client_id,
            events.c.state == EventState.FAILED,
            events.c.created_at >= since,
        )
        .values(**_requeued(now))
        .returning(events.c.watch_id, events.c.type)
    ).all()
    ended = {row.watch_id for row in requeued if row.type in webhook_events.TERMINAL}
    if ended:
        conn.execute(
            update(watches)
            .where(watches.c.id.in_(ended), watches.c.state == WatchState.FAILED)
            .values(state=WatchState.NOTIFYING, updated_at=now)
        )
    return len(requeued)


def _requeued(now: datetime) -> dict[str, Any]:
    return {
        "state": EventState.PENDING,
        "next_attempt_at": now,
        "round_start": events.c.attempts,
        "lease_owner": None,
        "lease_expires_at": None,
    }


@transaction
def attempts_of(conn: Connection, *, client_id: str, watch_id: str) -> list[Attempt] | None:
    """Every delivery attempt of every event of the watch, oldest first; None if no such watch."""
    owned = conn.execute(
        select(watches.c.id).where(watches.c.client_id == client_id, watches.c.id == watch_id)
    ).one_or_none()
    if owned is None:
        return None
    rows = conn.execute(
        select(
            attempts.c.event_id,
            events.c.type.label("event_type"),
            attempts.c.attempted_at,
            attempts.c.duration_ms,
            attempts.c.status_code,
            attempts.c.error,
            attempts.c.response_excerpt,
            attempts.c.next_attempt_at,
        )
        .join(events, events.c.id == attempts.c.event_id)
        .where(events.c.watch_id == watch_id)
        .order_by(attempts.c.id)
    )
    return [Attempt(**row._mapping) for row in rows]


def _with_events(conn: Connection, rows: Sequence[Row[Any]]) -> list[Watch]:
    ids = [row.id for row in rows]
    summaries: dict[str, EventSummary] = {}
    if ids:
        result = conn.execute(
            select(events.c.watch_id, *_EVENT_COLUMNS)
            .where(events.c.watch_id.in_(ids))
            .order_by(events.c.seq)
        )
        for event in result:
            summaries[event.watch_id] = EventSummary(*event[1:])
    return [
        Watch(
            **{**row._mapping, "events": row.events or list(webhook_events.DEFAULT_SUBSCRIPTION)},
            event=summaries.get(row.id),
        )
        for row in rows
    ]
