"""The queries of polling: claiming the watches that are due, and writing back what polls found.

The write-backs are built once, as the claims are, with the owner and the time bound with each
row, and run a batch at a time with the rows laid out for the driver directly (`Prepared`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Float, String, bindparam, func, insert, select, update

from app.delivery import webhooks
from app.states import WatchState
from app.store import captures, leases
from app.store.database import transaction
from app.store.prepared import Prepared
from app.store.tables import captures as capture_rows
from app.store.tables import constant, events, task_changes, watches
from app.store.types import UTCDateTime
from app.work import DueWatch, PollResult

#: Extend the leases of the watches `ids` whose polls are still under way.
_RENEW = leases.renewal(watches, WatchState.ACTIVE)
#: What a claimed watch brings along: the fields of `DueWatch`, in order.
_DUE_WATCH_COLUMNS = (
    watches.c.id,
    watches.c.task_id,
    watches.c.metadata,
    watches.c.callback_url,
    watches.c.client_id,
    watches.c.upstream_status,
    watches.c.next_poll_at,
    watches.c.poll_interval,
    watches.c.deadline_at,
    watches.c.not_found_since,
    watches.c.consecutive_errors,
    watches.c.consecutive_refusals,
    watches.c.upstream_api_key_encrypted,
    watches.c.task_status,
    watches.c.progress,
    watches.c.event_types,
    watches.c.event_seq,
    func.coalesce(watches.c.last_polled_at, watches.c.created_at),
)
#: Active watches, as PostgreSQL's partial index of live watches knows them (`tables.UNFINISHED`).
ACTIVE = watches.c.state == constant(WatchState.ACTIVE)
_DUE = (ACTIVE, watches.c.next_poll_at <= leases.NOW)

#: Claim the active watches due for a poll, oldest due first.
_CLAIM = leases.claim(watches, *_DUE, order_by=watches.c.next_poll_at, returning=_DUE_WATCH_COLUMNS)
#: Claim only the due watches whose deadline has passed (they expire without a request).
_CLAIM_PAST_DEADLINE = leases.claim(
    watches,
    *_DUE,
    watches.c.deadline_at <= leases.NOW,
    order_by=watches.c.next_poll_at,
    returning=_DUE_WATCH_COLUMNS,
)
#: The condition of every write-back of a poll: the watch is still ours and active.
_STILL_OURS = leases.still_ours(watches, WatchState.ACTIVE)
#: What every write-back of a poll that was made sets: made at `b_now`, and its lease ends.
_POLLED = {
    "poll_count": watches.c.poll_count + 1,
    "last_polled_at": bindparam("b_now"),
    "lease_owner": None,
    "lease_expires_at": None,
    "updated_at": bindparam("b_now"),
}
#: Record a poll that found its task still running, without a change to tell of (most polls).
_RECORD_SEEN = Prepared(
    update(watches)
    .where(*_STILL_OURS)
    .values(
        task_status=bindparam("b_status"),
        upstream_status=bindparam("b_upstream_status"),
        progress=bindparam("b_progress"),
        last_poll_error=None,
        next_poll_at=bindparam("b_next_poll_at"),
        not_found_since=None,
        consecutive_errors=0,
        consecutive_refusals=0,
        **_POLLED,
    )
)
#: Record a poll that failed, with when to try again.
_RECORD_FAILED = Prepared(
    update(watches)
    .where(*_STILL_OURS)
    .values(
        last_poll_error=bindparam("b_error"),
        next_poll_at=bindparam("b_next_poll_at"),
        not_found_since=bindparam("b_not_found_since"),
        consecutive_errors=bindparam("b_errors"),
        consecutive_refusals=bindparam("b_refusals"),
        **_POLLED,
    )
)
#: Note a status that a poll found changed (`task_changes`), for a watch still ours and active:
#: run before the write-backs, which end the lease.
_NOTE_CHANGE = Prepared(
    insert(task_changes).from_select(
        [
            "watch_id",
            "client_id",
            "at",
            "task_status",
            "upstream_status",
            "progress",
            "detection_lag",
        ],
        select(
            watches.c.id,
            watches.c.client_id,
            bindparam("b_now", type_=UTCDateTime),
            bindparam("b_status", type_=String),
            bindparam("b_upstream_status", type_=String),
            bindparam("b_progress", type_=Float),
            bindparam("b_lag", type_=Float),
        ).where(*_STILL_OURS),
    )
)
#: Lock the watches `ids` for the rest of the transaction, to learn which are still ours.
_LOCK_WATCHES = (
    select(watches.c.id, watches.c.lease_owner, watches.c.state)
    .where(watches.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)
#: Put new webhooks in the outbox (`webhooks.outbox_row`).
_NEW_EVENTS = Prepared(insert(events))
#: Put the results of succeeded tasks up for capture (`captures.new_capture_row`).
_NEW_CAPTURES = Prepared(insert(capture_rows))


@functools.cache
def _move_watches(names: tuple[str, ...], *, polled: bool) -> Prepared:
    """Move watches on (ending, or sending `task.updated`), setting the columns `names`: built
    once per shape; the shapes are few (final or not, polled or not, with a snapshot or not)."""
    values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in names}
    if polled:
        values["poll_count"] = watches.c.poll_count + 1
    return Prepared(update(watches).where(*_STILL_OURS).values(values))


@transaction
def claim_due_watches(
    conn: Connection, *, owner: str, lease: float, limit: int, past_deadline_only: bool = False
) -> list[DueWatch]:
    """Oldest due first, so that when polling is rationed every watch still gets its turn.

    `past_deadline_only` claims just the watches to expire, which need no upstream request.
    """
    statement = _CLAIM_PAST_DEADLINE if past_deadline_only else _CLAIM
    now = datetime.now(UTC)
    claimed = conn.execute(
        statement, leases.claim_params(owner=owner, lease=lease, limit=limit, now=now)
    )
    return [DueWatch(*row) for row in claimed]


@transaction
def renew_leases(conn: Connection, *, owner: str, ids: Sequence[str], lease: float) -> None:
    """Keep the watches `ids`, whose polls are still waiting for the upstream (or for their turn
    in its rate budget) or for their write-back, ours for `lease` more seconds."""
    conn.execute(_RENEW, leases.renewal_params(owner=owner, ids=ids, lease=lease))


@transaction
def record_polls(
    conn: Connection,
    *,
    owner: str,
    results: Sequence[PollResult],
    capture_timeout: float | None = None,
) -> list[str]:
    """Write a batch of polls back in one transaction; return the ids of the watches that got
    an event or a capture.

    With `capture_timeout` (result capture on), a task seen to succeed does not get its event
    yet: its watch moves to `capturing` and its result is put up for capture, which makes the
    event once it is over, within `capture_timeout` seconds.

    An ending watch moves to `notifying` and gets its webhook in the outbox in the same
    transaction, so a crash can never leave one without the other; both are written only while
    the watch is still ours and active, so that happens once per watch, whoever else holds or
    held it. A status change that a watch asked to hear about (`task.updated`) is written the
    same way. Every kind of write is one statement for the whole batch.
    """
    now = datetime.now(UTC)
    _note_changes(conn, owner, [r for r in results if r.status_changed], now)
    seen: list[PollResult] = []
    moving: list[PollResult] = []
    failed: list[PollResult] = []
    for result in results:
        if result.final:
            moving.append(result)
        elif result.snapshot is None:
            failed.append(result)
        elif result.watch.subscribed(webhooks.UPDATED) and result.watch.changed(result.snapshot):
            moving.append(result)
        else:
            seen.append(result)
    _RECORD_SEEN.executemany(
        conn, [_seen(r, owner, now) | {"b_next_poll_at": r.next_poll_at} for r in seen]
    )
    _RECORD_FAILED.executemany(
        conn,
        [
            {
                "b_id": r.watch.id,
                "b_owner": owner,
                "b_now": now,
                "b_error": r.error,
                "b_next_poll_at": r.next_poll_at,
                "b_not_found_since": r.not_found_since,
                "b_errors": r.consecutive_errors,
                "b_refusals": r.consecutive_refusals,
            }
            for r in failed
        ],
    )
    return _write_events(conn, owner, moving, now, capture_timeout)


def _note_changes(
    conn: Connection, owner: str, results: Sequence[PollResult], now: datetime
) -> None:
    """A few rows in a watch's life (queued, running, ended), so one statement per batch."""
    _NOTE_CHANGE.executemany(
        conn, [_seen(r, owner, now) | {"b_lag": r.detection_lag} for r in results]
    )


def _seen(result: PollResult, owner: str, now: datetime) -> dict[str, Any]:
    """The parameters of a write-back of what a poll saw, for the watch still ours."""
    snapshot = result.snapshot
    assert snapshot is not None
    return {
        "b_id": result.watch.id,
        "b_owner": owner,
        "b_now": now,
        "b_status": snapshot.status.value,
        "b_upstream_status": snapshot.upstream_status[:64],
        "b_progress": snapshot.progress,
    }


def _write_events(
    conn: Connection,
    owner: str,
    results: Sequence[PollResult],
    now: datetime,
    capture_timeout: float | None,
) -> list[str]:
    """Move watches on and put the webhooks that tell of it in the outbox, a batch at a time.

    A final result moves its watch to `notifying` with its one final event; a status change the
    watch asked to hear about keeps it polling and sends a `task.updated`. The watches still ours
    are locked first, so that the statements after them (one per kind of change, for the whole
    batch) cannot be overtaken by a cancellation or a reclaim: an event is written only for a
    watch that really moved. They are looked up by id alone and sorted out here: asked for their
    state as well, SQLite walked its index of every active watch instead of looking the ids up.
    """
    if not results:
        return []
    held = {
        row.id
        for row in conn.execute(_LOCK_WATCHES, {"ids": [result.watch.id for result in results]})
        if row.lease_owner == owner and row.state == WatchState.ACTIVE
    }
    moving = [result for result in results if result.watch.id in held]
    capturing = [r for r in moving if capture_timeout is not None and r.succeeded]
    notifying = [r for r in moving if capture_timeout is None or not r.succeeded]
    captured_ids = {r.watch.id for r in capturing}
    release = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    shapes: dict[tuple[tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for result in moving:
        changes = _watch_changes(result, now, capture=result.watch.id in captured_ids) | release
        key = (tuple(changes), result.polled)
        shapes.setdefault(key, []).append(
            {"b_id": result.watch.id, "b_owner": owner}
            | {f"v_{name}": value for name, value in changes.items()}
        )
    for (names, polled), rows in shapes.items():
        _move_watches(names, polled=polled).executemany(conn, rows)
    if capturing:
        assert capture_timeout is not None
        deadline = now + timedelta(seconds=capture_timeout)
        _NEW_CAPTURES.executemany(
            conn,
            [
                captures.new_capture_row(
                    r.watch.id, r.watch.client_id, r.snapshot.url, r.snapshot.body, now, deadline
                )
                for r in capturing
                if r.snapshot is not None
            ],
        )
    new_events = [webhooks.outbox_row(result, now) for result in notifying]
    _NEW_EVENTS.executemany(conn, new_events)
    return [row["watch_id"] for row in new_events] + sorted(captured_ids)


def _watch_changes(result: PollResult, now: datetime, *, capture: bool) -> dict[str, Any]:
    """`capture`: the watch waits for its result to be captured; its event comes after."""
    watch, snapshot = result.watch, result.snapshot
    changes: dict[str, Any] = {"event_seq": watch.event_seq + 1}
    if capture:
        changes |= {
            "state": WatchState.CAPTURING,
            "next_poll_at": None,
            "event_seq": watch.event_seq,
        }
    elif result.final:
        changes |= {"state": WatchState.NOTIFYING, "next_poll_at": None}
    else:
        changes |= {
            "next_poll_at": result.next_poll_at,
            "not_found_since": None,
            "consecutive_errors": 0,
            "consecutive_refusals": 0,
        }
    if result.polled:
        changes |= {"last_poll_error": result.error, "last_polled_at": now}
    if snapshot is not None:
        changes |= {
            "task_status": snapshot.status.value,
            "upstream_status": snapshot.upstream_status[:64],
            "progress": snapshot.progress,
        }
    return changes
