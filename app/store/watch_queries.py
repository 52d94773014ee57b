"""Reading and changing watches on behalf of the API; every query is scoped to one client."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, func, select, update

from app.delivery import webhooks
from app.ids import id_floor
from app.states import LIVE_WATCH_STATES, CaptureState, EventState, WatchState
from app.store import client_apps
from app.store.database import transaction
from app.store.tables import attempts, captures, clients, events, task_changes, watches

_ENDED = (WatchState.NOTIFYING, WatchState.COMPLETED, WatchState.FAILED)
_COUNT_LIVE = (
    select(func.count())
    .select_from(watches)
    .where(watches.c.client_id == bindparam("client_id"), watches.c.state.in_(LIVE_WATCH_STATES))
)


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
class CaptureSummary:
    state: str
    source_url: str | None
    content_type: str | None
    size_bytes: int | None
    sha256: str | None
    expires_at: datetime | None
    error: webhooks.CaptureError | None


@dataclass(frozen=True, slots=True)
class Watch:
    id: str
    client_id: str
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
    capture: CaptureSummary | None = None
    #: Its app's name, on the operator's pages of every app's watches.
    client_name: str | None = None


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


@dataclass(frozen=True, slots=True)
class TaskChange:
    """A status the relay saw the task take, with its progress then."""

    at: datetime
    task_status: str
    upstream_status: str | None
    progress: float | None


@dataclass(frozen=True, slots=True)
class EventDetail:
    """A webhook as sent: `id` is its `webhook-id`, `payload` its body, byte for byte."""

    id: str
    type: str
    state: str
    payload: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class WatchHistory:
    watch: Watch
    client_name: str
    changes: list[TaskChange]
    events: list[EventDetail]
    #: Oldest first, as `attempts_of`.
    attempts: list[Attempt]


class WrongState(Exception):
    """The watch exists but is not in a state that allows the operation."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


_WATCH_COLUMNS = [
    watches.c.id,
    watches.c.client_id,
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
#: The fields of `Watch` read as they are (its `events` defaults when null).
_WATCH_FIELDS = [column.name for column in _WATCH_COLUMNS if column.name != "events"]
_EVENT_COLUMNS = [
    column.label(f"e_{column.name}")
    for column in (
        events.c.id,
        events.c.type,
        events.c.state,
        events.c.attempts,
        events.c.next_attempt_at,
        events.c.last_status_code,
        events.c.last_error,
        events.c.delivered_at,
    )
]
_CAPTURE_COLUMNS = [
    column.label(f"c_{column.name}")
    for column in (
        captures.c.state,
        captures.c.source_url,
        captures.c.content_type,
        captures.c.size_bytes,
        captures.c.sha256,
        captures.c.expires_at,
        captures.c.error_code,
        captures.c.error_message,
    )
]
#: The watch's latest event (the final one, once there is one): looked up per watch through
#: `ix_events_watch_id_seq`.
#: A watch's events, looked through apart from the one joined to it.
_OF_WATCH = events.alias("of_watch")
_LATEST_EVENT = (
    select(_OF_WATCH.c.id)
    .where(_OF_WATCH.c.watch_id == watches.c.id)
    .order_by(_OF_WATCH.c.seq.desc())
    .limit(1)
    .correlate(watches)
    .scalar_subquery()
)
#: Watches as the API shows them, each with its latest event and its capture, in one statement:
#: a page of the list is one query, which the console's list asks for every few seconds.
_WATCHES = select(*_WATCH_COLUMNS, *_EVENT_COLUMNS, *_CAPTURE_COLUMNS).select_from(
    watches.outerjoin(events, events.c.id == _LATEST_EVENT).outerjoin(
        captures, captures.c.id == watches.c.id
    )
)


@transaction
def find_live(conn: Connection, *, client_id: str, task_id: str, callback_url: str) -> Watch:
    """The live watch of this task and callback, which a registration found already there."""
    existing = conn.execute(
        _WATCHES.where(
            watches.c.client_id == client_id,
            watches.c.task_id == task_id,
            watches.c.callback_url == callback_url,
            watches.c.state != WatchState.CANCELLED,
        )
    ).one()
    return _watch(existing)


@transaction
def count_live(conn: Connection, *, client_id: str) -> int:
    """How many of the client's watches are live (the cap on them), from an index alone."""
    return conn.execute(_COUNT_LIVE, {"client_id": client_id}).scalar_one()


@transaction
def get(conn: Connection, *, client_id: str, watch_id: str) -> Watch | None:
    return _read(conn, client_id, watch_id)


def _starting_with(prefix: str, dialect: str) -> list[ColumnElement[bool]]:
    """Task ids that begin with `prefix`, as a range of `ix_watches_client_id_task_id`: `LIKE`
    would read every watch of the app. The range is one of code points, where the ids that begin
    with a prefix are exactly those from it up to the prefix with its last character the next
    one: SQLite compares text so, and PostgreSQL so with its pattern operators (`~>=~`, `~<~`,
    which the index is made for), whatever the database's collation."""
    task_id = watches.c.task_id
    if dialect == "sqlite":
        at_least, below = task_id.__ge__, task_id.__lt__
    else:
        at_least = task_id.op("~>=~", is_comparison=True)
        below = task_id.op("~<~", is_comparison=True)
    found = [at_least(prefix)]
    while prefix and prefix[-1] == chr(sys.maxunicode):
        prefix = prefix[:-1]
    if prefix:
        found.append(below(prefix[:-1] + chr(ord(prefix[-1]) + 1)))
    return found


def _read(conn: Connection, client_id: str | None, watch_id: str) -> Watch | None:
    query = _WATCHES.where(watches.c.id == watch_id)
    if client_id is not None:
        query = query.where(watches.c.client_id == client_id)
    row = conn.execute(query).one_or_none()
    return None if row is None else _watch(row)


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Which watches a page lists; every condition given must hold."""

    state: WatchState | None = None
    task_status: str | None = None
    #: The type of the watch's final event (`task.succeeded`, `task.failed`, `watch.expired`).
    event_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    task_id: str | None = None
    task_id_prefix: str | None = None


@transaction
def page(
    conn: Connection,
    *,
    client_id: str | None,
    limit: int,
    before: str | None = None,
    matching: WatchFilter = WatchFilter(),
    key_digest: str | None = None,
) -> list[Watch]:
    """Newest first; ids are time-ordered, so `before` (the last id seen) is a stable cursor.

    `client_id` None is the operator's view: every app's watches. With `key_digest`, the page is
    empty unless that is still the app's key (`client_apps.holds_key`): the console's list, which
    refreshes itself every few seconds, checks its session and reads its page in one statement.
    """
    query = _WATCHES
    if client_id is not None:
        query = query.where(watches.c.client_id == client_id)
        if key_digest is not None:
            query = query.where(client_apps.holds_key(client_id, key_digest))
    else:
        query = query.add_columns(clients.c.name.label("client_name")).join(
            clients, clients.c.id == watches.c.client_id
        )
    if before is not None:
        query = query.where(watches.c.id < before)
    query = query.where(*_conditions(matching, conn.dialect.name))
    query = query.order_by(watches.c.id.desc()).limit(limit)
    return [_watch(row) for row in conn.execute(query)]


def _conditions(matching: WatchFilter, dialect: str) -> list[ColumnElement[bool]]:
    """Creation times become bounds on the id, which begins with it: the index that orders the
    page also narrows it."""
    found: list[ColumnElement[bool]] = []
    if matching.state is not None:
        found.append(watches.c.state == matching.state)
    if matching.task_status is not None:
        found.append(watches.c.task_status == matching.task_status)
    if matching.task_id is not None:
        found.append(watches.c.task_id == matching.task_id)
    if matching.task_id_prefix:
        found.extend(_starting_with(matching.task_id_prefix, dialect))
    if matching.created_after is not None:
        found.append(watches.c.id >= id_floor("wat", matching.created_after))
    if matching.created_before is not None:
        found.append(watches.c.id < id_floor("wat", matching.created_before))
    if matching.event_type is not None:
        found.append(
            select(_OF_WATCH.c.id)
            .where(_OF_WATCH.c.watch_id == watches.c.id, _OF_WATCH.c.type == matching.event_type)
            .correlate(watches)
            .exists()
        )
    return found


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
            watches.c.state.in_(LIVE_WATCH_STATES),
        )
        .values(state=WatchState.CANCELLED, lease_owner=None, updated_at=now)
    )
    if changed.rowcount:
        conn.execute(
            update(events)
            .where(events.c.watch_id == watch_id, events.c.state == EventState.PENDING)
            .values(state=EventState.CANCELLED, next_attempt_at=None)
        )
        conn.execute(
            update(captures)
            .where(captures.c.id == watch_id, captures.c.state == CaptureState.PENDING)
            .values(
                state=CaptureState.FAILED,
                next_attempt_at=None,
                inline_data=None,
                error_code="cancelled",
                error_message="the watch was cancelled before its result was captured",
                updated_at=now,
            )
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
            events.c.type.in_(webhooks.TERMINAL),
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
    ended = {row.watch_id for row in requeued if row.type in webhooks.TERMINAL}
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
def history(conn: Connection, *, client_id: str | None, watch_id: str) -> WatchHistory | None:
    """Everything known of one watch, for the console's page of it; `client_id` None is the
    operator's view (any app's watch)."""
    watch = _read(conn, client_id, watch_id)
    if watch is None:
        return None
    client_name = conn.execute(
        select(clients.c.name).where(clients.c.id == watch.client_id)
    ).scalar_one()
    changes = conn.execute(
        select(
            task_changes.c.at,
            task_changes.c.task_status,
            task_changes.c.upstream_status,
            task_changes.c.progress,
        )
        .where(task_changes.c.watch_id == watch_id)
        .order_by(task_changes.c.id)
    )
    sent = conn.execute(
        select(
            events.c.id,
            events.c.type,
            events.c.state,
            events.c.payload,
            events.c.created_at,
            events.c.attempts,
            events.c.next_attempt_at,
            events.c.delivered_at,
        )
        .where(events.c.watch_id == watch_id)
        .order_by(events.c.seq)
    )
    return WatchHistory(
        watch=watch,
        client_name=client_name,
        changes=[TaskChange(**row._mapping) for row in changes],
        events=[EventDetail(**row._mapping) for row in sent],
        attempts=_attempts(conn, watch_id),
    )


@transaction
def attempts_of(conn: Connection, *, client_id: str, watch_id: str) -> list[Attempt] | None:
    """Every delivery attempt of every event of the watch, oldest first; None if no such watch."""
    owned = conn.execute(
        select(watches.c.id).where(watches.c.client_id == client_id, watches.c.id == watch_id)
    ).one_or_none()
    if owned is None:
        return None
    return _attempts(conn, watch_id)


def _attempts(conn: Connection, watch_id: str) -> list[Attempt]:
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


def _watch(row: Row[Any]) -> Watch:
    """Its latest event and its capture came along, as columns of their own (null if none)."""
    values = row._mapping
    event = (
        EventSummary(
            id=row.e_id,
            type=row.e_type,
            state=row.e_state,
            attempts=row.e_attempts,
            next_attempt_at=row.e_next_attempt_at,
            last_status_code=row.e_last_status_code,
            last_error=row.e_last_error,
            delivered_at=row.e_delivered_at,
        )
        if row.e_id is not None
        else None
    )
    capture = (
        CaptureSummary(
            state=row.c_state,
            source_url=row.c_source_url
            if row.c_source_url and webhooks.is_link(row.c_source_url)
            else None,
            content_type=row.c_content_type,
            size_bytes=row.c_size_bytes,
            sha256=row.c_sha256,
            expires_at=row.c_expires_at,
            error=webhooks.CaptureError(row.c_error_code, row.c_error_message or "")
            if row.c_error_code
            else None,
        )
        if row.c_state is not None
        else None
    )
    return Watch(
        **{name: values[name] for name in _WATCH_FIELDS},
        events=row.events or list(webhooks.DEFAULT_SUBSCRIPTION),
        event=event,
        capture=capture,
        client_name=values.get("client_name"),
    )
