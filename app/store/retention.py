"""The queries of retention: deleting finished watches, with their events, attempts and
capture, once they are past their time, and idempotency keys once past theirs; and, on SQLite,
giving the freed space back to the file system.

Each call deletes one small batch, as one short transaction. A watch is deleted only when all
of it is over: finished (`tables.FINISHED`), and none of its rows pending or leased (an event due
or being delivered, a capture being obtained, a stored file the file cleanup has not deleted
yet). On PostgreSQL every row is locked `FOR UPDATE SKIP LOCKED` before it is deleted, so pruning
never waits on anything: replicas pruning at once take disjoint batches, and a watch whose event
a `redeliver` is queueing again at that very moment is left for a later batch (the redeliver
locks the event, then the watch: waiting for the event here, holding the watch, would make a
deadlock of it). SQLite runs each batch start to end, alone.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BindParameter, Connection, bindparam, delete, or_, select, tuple_

from app.states import CaptureState, EventState
from app.store import leases
from app.store.database import transaction
from app.store.tables import (
    FINISHED,
    attempts,
    captures,
    events,
    idempotency_keys,
    task_changes,
    watches,
)

#: SQLite's `auto_vacuum` mode that frees pages on demand (`PRAGMA incremental_vacuum`).
INCREMENTAL = 2

_IDS: BindParameter[str] = bindparam("ids", expanding=True)
_EVENT_IDS: BindParameter[str] = bindparam("event_ids", expanding=True)


#: Up to `limit` finished watches that ended by `cutoff` and that no claim holds, oldest first;
#: locked, skipping any another transaction holds. What of theirs is still at work is asked next,
#: of these ids alone: asked here, PostgreSQL's planner would rather walk every event.
_CANDIDATES = (
    select(watches.c.id)
    .where(FINISHED, watches.c.updated_at <= bindparam("cutoff"), leases.unleased(watches))
    .order_by(watches.c.updated_at)
    .limit(bindparam("limit"))
    .with_for_update(of=watches, skip_locked=True)
)
#: Every event of the watches `ids`.
_EVENTS_OF = select(events.c.id, events.c.watch_id).where(events.c.watch_id.in_(_IDS))
#: The events of the watches `ids` that are over and free, locked. Not among them: an event still
#: due or being delivered, and one another transaction holds (a redeliver queueing it again),
#: which is skipped; the watch of either waits for a later batch.
_LOCK_EVENTS = (
    select(events.c.id)
    .where(
        events.c.watch_id.in_(_IDS), events.c.state != EventState.PENDING, leases.unleased(events)
    )
    .with_for_update(skip_locked=True)
)
#: The captures of the watches `ids` still at work: being obtained, or leased, or a stored file
#: the file cleanup has yet to delete.
_BUSY_CAPTURES = select(captures.c.id).where(
    captures.c.id.in_(_IDS),
    or_(
        captures.c.state.in_((CaptureState.PENDING, CaptureState.STORED)),
        ~leases.unleased(captures),
    ),
)
_DELETE_ATTEMPTS = delete(attempts).where(attempts.c.event_id.in_(_EVENT_IDS))
_DELETE_EVENTS = delete(events).where(events.c.id.in_(_EVENT_IDS))
_DELETE_CAPTURES = delete(captures).where(captures.c.id.in_(_IDS))
_DELETE_CHANGES = delete(task_changes).where(task_changes.c.watch_id.in_(_IDS))
_DELETE_WATCHES = delete(watches).where(watches.c.id.in_(_IDS))
#: Delete up to `limit` idempotency keys made by `cutoff`, oldest first, skipping any another
#: transaction holds (a request storing its answer in place of an expired one).
_DELETE_KEYS = delete(idempotency_keys).where(
    tuple_(idempotency_keys.c.client_id, idempotency_keys.c.key).in_(
        select(idempotency_keys.c.client_id, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at <= bindparam("cutoff"))
        .order_by(idempotency_keys.c.created_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
)


@dataclass(frozen=True, slots=True)
class Pruned:
    #: Watches found past their time: as many as asked for means more may be waiting.
    found: int
    #: Of those, the watches deleted; the others were held by another transaction.
    deleted: int


@transaction
def prune_watches(conn: Connection, *, finished_before: datetime, limit: int) -> Pruned:
    """Delete up to `limit` watches that finished by `finished_before`, oldest first, each with
    its events, their attempts, its capture and its task's course."""
    now = datetime.now(UTC)
    ids = list(
        conn.execute(_CANDIDATES, {"cutoff": finished_before, "now": now, "limit": limit}).scalars()
    )
    if not ids:
        return Pruned(0, 0)
    owned = conn.execute(_EVENTS_OF, {"ids": ids}).all()
    locked = set(conn.execute(_LOCK_EVENTS, {"ids": ids, "now": now}).scalars())
    held = {event.watch_id for event in owned if event.id not in locked}
    held.update(conn.execute(_BUSY_CAPTURES, {"ids": ids, "now": now}).scalars())
    chosen = [watch_id for watch_id in ids if watch_id not in held]
    event_ids = [event.id for event in owned if event.watch_id not in held]
    if event_ids:
        conn.execute(_DELETE_ATTEMPTS, {"event_ids": event_ids})
        conn.execute(_DELETE_EVENTS, {"event_ids": event_ids})
    if chosen:
        conn.execute(_DELETE_CAPTURES, {"ids": chosen})
        conn.execute(_DELETE_CHANGES, {"ids": chosen})
        conn.execute(_DELETE_WATCHES, {"ids": chosen})
    return Pruned(found=len(ids), deleted=len(chosen))


@transaction
def prune_idempotency_keys(conn: Connection, *, created_before: datetime, limit: int) -> int:
    """Delete up to `limit` idempotency keys made by `created_before`; how many were."""
    deleted: int = conn.execute(_DELETE_KEYS, {"cutoff": created_before, "limit": limit}).rowcount
    return deleted


@transaction
def enable_incremental_vacuum(conn: Connection) -> bool:
    """Make a SQLite file one that can give freed pages back (`give_space_back`); whether it had
    to be rewritten for that.

    Files the relay creates are made so (`database._tune_sqlite`); one made before, or by another
    tool, is rewritten once by a `VACUUM`, which takes a while for a large file. PostgreSQL's
    autovacuum does the same of its own accord.
    """
    if conn.dialect.name != "sqlite":
        return False
    if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == INCREMENTAL:
        return False
    conn.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
    conn.exec_driver_sql("VACUUM")
    return True


@transaction
def give_space_back(conn: Connection, *, pages: int) -> int:
    """Return up to `pages` free pages of a SQLite file to the file system (once the next
    checkpoint has copied the change); how many are still free. 0 on PostgreSQL.

    `incremental_vacuum` frees one page per step of its statement, and SQLAlchemy, like the
    `sqlite3` module's `execute`, steps a statement that returns no rows only once: the
    module's `executescript` steps it to the end.
    """
    raw = conn.connection.driver_connection
    if conn.dialect.name != "sqlite" or not isinstance(raw, sqlite3.Connection):
        return 0
    raw.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    free: int = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
    return free
