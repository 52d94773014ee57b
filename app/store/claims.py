"""The queries behind the background work: claiming what is due, and recording what happened.

Work is claimed with a lease: one UPDATE marks up to N due rows as ours until a deadline and
returns them. On PostgreSQL the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so replicas sharing
the database claim disjoint rows without waiting on each other; SQLite serializes writers and
ignores the clause. If a process dies holding a lease, the rows become due again once it expires.
Every write-back is conditioned on still holding the lease and on the row's state, so a
cancellation or another replica's reclaim is never overwritten.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.dml import ReturningUpdate

from app import events as webhook_events
from app.ids import event_id
from app.states import EventState, WatchState
from app.store.database import transaction
from app.store.prepared import Prepared
from app.store.tables import attempts, clients, events, watches
from app.store.types import UTCDateTime
from app.upstream import TaskSnapshot


@dataclass(frozen=True, slots=True)
class DueWatch:
    id: str
    task_id: str
    metadata: Any
    callback_url: str
    client_id: str
    upstream_status: str | None
    due_at: datetime
    poll_interval: float | None
    deadline_at: datetime
    not_found_since: datetime | None
    consecutive_errors: int
    consecutive_refusals: int
    upstream_api_key_encrypted: str | None
    task_status: str | None
    progress: float | None
    event_types: list[str] | None
    event_seq: int

    def subscribed(self, kind: str) -> bool:
        return kind in (self.event_types or webhook_events.DEFAULT_SUBSCRIPTION)

    def changed(self, snapshot: TaskSnapshot) -> bool:
        return (self.task_status, self.progress) != (snapshot.status.value, snapshot.progress)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll found and what the poller decided from it, ready to be written back.

    A terminal `snapshot` or an `expiry` ends the watch; anything else schedules the next poll.
    """

    watch: DueWatch
    snapshot: TaskSnapshot | None = None
    error: str | None = None
    next_poll_at: datetime | None = None
    not_found_since: datetime | None = None
    consecutive_errors: int = 0
    consecutive_refusals: int = 0
    expiry: webhook_events.Expiry | None = None
    polled: bool = True

    @property
    def final(self) -> bool:
        return self.expiry is not None or (
            self.snapshot is not None and self.snapshot.status.terminal
        )


@dataclass(frozen=True, slots=True)
class DueEvent:
    id: str
    watch_id: str
    type: str
    callback_url: str
    payload: str
    attempts: int
    round_start: int
    signing_secret: str

    @property
    def terminal(self) -> bool:
        return self.type in webhook_events.TERMINAL


@dataclass(frozen=True, slots=True)
class AttemptResult:
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    #: Seconds the receiver asked us to wait (`Retry-After` on a 429 or 503).
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _watch_claim(*, past_deadline_only: bool) -> ReturningUpdate[Any]:
    """Claiming is the most frequent statement of all, so it is built once, with `now`, `owner`,
    `lease_until` and `limit` bound at each claim: building it anew and working out its cache
    key cost more than running it."""
    now = bindparam("now", type_=UTCDateTime())
    conditions = [
        watches.c.state == WatchState.ACTIVE,
        watches.c.next_poll_at <= now,
        or_(watches.c.lease_expires_at.is_(None), watches.c.lease_expires_at < now),
    ]
    if past_deadline_only:
        conditions.append(watches.c.deadline_at <= now)
    due = (
        select(watches.c.id)
        .where(*conditions)
        .order_by(watches.c.next_poll_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    return (
        update(watches)
        .where(watches.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("lease_until"))
        .returning(
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
        )
    )


_CLAIM_WATCHES = {flag: _watch_claim(past_deadline_only=flag) for flag in (False, True)}


@transaction
def claim_due_watches(
    conn: Connection, *, owner: str, lease: float, limit: int, past_deadline_only: bool = False
) -> list[DueWatch]:
    """Oldest due first, so that when polling is rationed every watch still gets its turn.

    `past_deadline_only` claims just the watches to expire, which need no upstream request.
    """
    now = datetime.now(UTC)
    claimed = conn.execute(
        _CLAIM_WATCHES[past_deadline_only],
        _claim_params(owner=owner, lease=lease, limit=limit, now=now),
    )
    return [DueWatch(*row) for row in claimed]


def _claim_params(*, owner: str, lease: float, limit: int, now: datetime) -> dict[str, Any]:
    return {
        "now": now,
        "owner": owner,
        "lease_until": now + timedelta(seconds=lease),
        "limit": limit,
    }


def _still_ours(table: Table, state: str) -> tuple[ColumnElement[bool], ...]:
    """A write-back's condition: the row `b_id`, still leased by `b_owner` and still in `state`
    (a cancellation, or another replica that reclaimed it, wins)."""
    return (
        table.c.id == bindparam("b_id"),
        table.c.lease_owner == bindparam("b_owner"),
        table.c.state == state,
    )


#: The condition of every write-back of a poll.
_WATCH_STILL_OURS = _still_ours(watches, WatchState.ACTIVE)

#: What the write-back of every poll that was made sets: it was made at `b_now`, and its lease
#: ends.
_POLLED = {
    "poll_count": watches.c.poll_count + 1,
    "last_polled_at": bindparam("b_now"),
    "lease_owner": None,
    "lease_expires_at": None,
    "updated_at": bindparam("b_now"),
}

#: The write-backs of a poll that found its task still running (most polls) and of one that
#: failed: built once, as the claims are, with the owner and the time bound with each row, and
#: run a batch at a time with the rows laid out for the driver directly (`Prepared`).
_RECORD_SEEN = Prepared(
    update(watches)
    .where(*_WATCH_STILL_OURS)
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
_RECORD_FAILED = Prepared(
    update(watches)
    .where(*_WATCH_STILL_OURS)
    .values(
        last_poll_error=bindparam("b_error"),
        next_poll_at=bindparam("b_next_poll_at"),
        not_found_since=bindparam("b_not_found_since"),
        consecutive_errors=bindparam("b_errors"),
        consecutive_refusals=bindparam("b_refusals"),
        **_POLLED,
    )
)
#: The outbox rows of new webhooks (`_event_row`).
_NEW_EVENTS = Prepared(insert(events))


@transaction
def record_polls(conn: Connection, *, owner: str, results: Sequence[PollResult]) -> list[str]:
    """Write a batch of polls back in one transaction; return the ids of events created.

    An ending watch moves to `notifying` and gets its webhook in the outbox in the same
    transaction, so a crash can never leave one without the other; both are written only while
    the watch is still ours and active, so that happens once per watch, whoever else holds or
    held it. A status change that a watch asked to hear about (`task.updated`) is written the
    same way. Every kind of write is one statement for the whole batch.
    """
    now = datetime.now(UTC)
    seen: list[PollResult] = []
    updates: list[PollResult] = []
    for result in results:
        if result.snapshot is None or result.final:
            continue
        if result.watch.subscribed(webhook_events.UPDATED) and result.watch.changed(
            result.snapshot
        ):
            updates.append(result)
        else:
            seen.append(result)
    failed = [r for r in results if r.snapshot is None and not r.final]
    ending = [r for r in results if r.final]
    release = {
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
    }
    _RECORD_SEEN.executemany(
        conn,
        [
            {
                "b_id": r.watch.id,
                "b_owner": owner,
                "b_now": now,
                "b_status": r.snapshot.status.value,
                "b_upstream_status": r.snapshot.upstream_status[:64],
                "b_progress": r.snapshot.progress,
                "b_next_poll_at": r.next_poll_at,
            }
            for r in seen
            if r.snapshot is not None
        ],
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
    created = _write_events(conn, owner, release, [*updates, *ending], now)
    return created


def _write_events(
    conn: Connection,
    owner: str,
    release: dict[str, Any],
    results: Sequence[PollResult],
    now: datetime,
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
    shapes: dict[tuple[tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for result in moving:
        changes = _watch_changes(result, now) | release
        key = (tuple(changes), result.polled)
        shapes.setdefault(key, []).append(
            {"b_id": result.watch.id, "b_owner": owner}
            | {f"v_{name}": value for name, value in changes.items()}
        )
    for (names, polled), rows in shapes.items():
        _move_watches(names, polled=polled).executemany(conn, rows)
    new_events = [_event_row(result, now) for result in moving]
    _NEW_EVENTS.executemany(conn, new_events)
    return [row["id"] for row in new_events]


#: The watches `ids`, locked for the rest of the transaction (`_write_events`).
_LOCK_WATCHES = (
    select(watches.c.id, watches.c.lease_owner, watches.c.state)
    .where(watches.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)


@functools.cache
def _move_watches(names: tuple[str, ...], *, polled: bool) -> Prepared:
    """The write-back of watches that move on, setting the columns `names`: built once per
    shape, as the other write-backs are; the shapes are few (final or not, polled or not, with a
    snapshot or not)."""
    values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in names}
    if polled:
        values["poll_count"] = watches.c.poll_count + 1
    return Prepared(update(watches).where(*_WATCH_STILL_OURS).values(values))


def _watch_changes(result: PollResult, now: datetime) -> dict[str, Any]:
    watch, snapshot = result.watch, result.snapshot
    changes: dict[str, Any] = {"event_seq": watch.event_seq + 1}
    if result.final:
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


def _event_row(result: PollResult, now: datetime) -> dict[str, Any]:
    """The outbox row of the webhook that tells of `result`; its id is derived, not drawn, so
    writing it twice is impossible."""
    watch, snapshot = result.watch, result.snapshot
    seq = watch.event_seq + 1
    described = {
        "created_at": now,
        "watch_id": watch.id,
        "task_id": watch.task_id,
        "metadata": watch.metadata,
    }
    if result.expiry is not None:
        kind = webhook_events.EXPIRED
        new_id = event_id(watch.id, kind)
        payload = webhook_events.build_expiry_payload(
            event_id=new_id,
            upstream_status=watch.upstream_status,
            expiry=result.expiry,
            **described,
        )
    else:
        assert snapshot is not None
        kind = webhook_events.event_type(snapshot.status)
        new_id = event_id(watch.id, kind if result.final else f"{kind}:{seq}")
        payload = webhook_events.build_payload(event_id=new_id, snapshot=snapshot, **described)
    return {
        "id": new_id,
        "watch_id": watch.id,
        "client_id": watch.client_id,
        "seq": seq,
        "type": kind,
        "callback_url": watch.callback_url,
        "payload": payload,
        "state": EventState.PENDING,
        "attempts": 0,
        "round_start": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


@dataclass(frozen=True, slots=True)
class ClaimedEvents:
    events: list[DueEvent]
    #: When the soonest event not due yet falls due, if fewer events than asked for were due (and
    #: any is pending): the deliverer looks again then rather than at its next tick.
    next_due_at: datetime | None


@transaction
def claim_due_events(conn: Connection, *, owner: str, lease: float, limit: int) -> ClaimedEvents:
    """Claim due events, first attempts before retries, and never one while an earlier event of
    its watch is still pending.

    A receiver that comes back after an outage has a backlog of retries due at once; fresh
    webhooks, for it and for everyone else, go out first instead of queueing behind that backlog.
    The order per watch keeps each watch's webhooks in sequence, and no `task.updated` after the
    final event.
    """
    now = datetime.now(UTC)
    claimed = list(
        conn.execute(
            _CLAIM_EVENTS[True], _claim_params(owner=owner, lease=lease, limit=limit, now=now)
        )
    )
    if len(claimed) < limit:
        retries = _claim_params(owner=owner, lease=lease, limit=limit - len(claimed), now=now)
        claimed += conn.execute(_CLAIM_EVENTS[False], retries)
    next_due_at = None
    if len(claimed) < limit:
        next_due_at = conn.execute(_NEXT_EVENT_DUE, {"now": now}).scalar()
    if not claimed:
        return ClaimedEvents([], next_due_at)
    signers = conn.execute(_SIGNERS, {"ids": list({row.client_id for row in claimed})})
    secrets = {row.id: row.signing_secret for row in signers}
    due = [
        DueEvent(
            id=row.id,
            watch_id=row.watch_id,
            type=row.type,
            callback_url=row.callback_url,
            payload=row.payload,
            attempts=row.attempts,
            round_start=row.round_start,
            signing_secret=secrets[row.client_id],
        )
        for row in claimed
    ]
    return ClaimedEvents(due, next_due_at)


def _event_claim(*, fresh: bool) -> ReturningUpdate[Any]:
    """Built once, as `_watch_claim` is."""
    now = bindparam("now", type_=UTCDateTime())
    earlier = events.alias("earlier")
    due = (
        select(events.c.id)
        .where(
            events.c.state == EventState.PENDING,
            events.c.attempts == 0 if fresh else events.c.attempts > 0,
            events.c.next_attempt_at <= now,
            or_(events.c.lease_expires_at.is_(None), events.c.lease_expires_at < now),
            ~exists().where(
                earlier.c.watch_id == events.c.watch_id,
                earlier.c.state == EventState.PENDING,
                earlier.c.seq < events.c.seq,
            ),
        )
        .order_by(events.c.next_attempt_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    return (
        update(events)
        .where(events.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("lease_until"))
        .returning(
            events.c.id,
            events.c.watch_id,
            events.c.type,
            events.c.callback_url,
            events.c.payload,
            events.c.attempts,
            events.c.round_start,
            events.c.client_id,
        )
    )


#: By whether the events are fresh (never attempted) or retries.
_CLAIM_EVENTS = {fresh: _event_claim(fresh=fresh) for fresh in (True, False)}
#: A pending event due after `now` is not leased: its lease ended when its attempt was recorded.
_NEXT_EVENT_DUE = (
    select(events.c.next_attempt_at)
    .where(
        events.c.state == EventState.PENDING,
        events.c.next_attempt_at > bindparam("now", type_=UTCDateTime()),
    )
    .order_by(events.c.next_attempt_at)
    .limit(1)
)
#: The signing secrets of the clients `ids`, looked up with every claim of events.
_SIGNERS = select(clients.c.id, clients.c.signing_secret).where(
    clients.c.id.in_(bindparam("ids", expanding=True))
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery attempt and what follows: delivered, due again at `retry_at`, or dead."""

    event: DueEvent
    result: AttemptResult
    retry_at: datetime | None

    @property
    def event_state(self) -> EventState:
        if self.result.delivered:
            return EventState.DELIVERED
        return EventState.FAILED if self.retry_at is None else EventState.PENDING

    @property
    def watch_state(self) -> WatchState | None:
        """Only the final event, once delivered or dead, moves its watch to its end."""
        if not self.event.terminal or self.event_state is EventState.PENDING:
            return None
        return WatchState.COMPLETED if self.result.delivered else WatchState.FAILED


#: The write-backs of every delivery, built once and run as the polls' are.
_NEW_ATTEMPTS = Prepared(insert(attempts))
_RECORD_ATTEMPT = Prepared(
    update(events)
    .where(*_still_ours(events, EventState.PENDING))
    .values(
        state=bindparam("b_state"),
        attempts=events.c.attempts + 1,
        next_attempt_at=bindparam("b_retry_at"),
        lease_owner=None,
        lease_expires_at=None,
        last_status_code=bindparam("b_status_code"),
        last_error=bindparam("b_error"),
        delivered_at=bindparam("b_delivered_at"),
    )
)
_END_WATCHES = Prepared(
    update(watches)
    .where(
        watches.c.id == bindparam("b_watch_id"),
        watches.c.state == WatchState.NOTIFYING,
        exists().where(
            events.c.id == bindparam("b_event_id"),
            events.c.state == bindparam("b_event_state"),
        ),
    )
    .values(state=bindparam("b_watch_state"), updated_at=bindparam("b_now"))
)


@transaction
def record_attempts(conn: Connection, *, owner: str, outcomes: Sequence[Outcome]) -> list[None]:
    """Log a batch of attempts and move their events and watches on, in one transaction.

    An event is moved only while we still hold it and it is pending (a cancel wins); its watch
    follows only if the event really reached the state that ends it.
    """
    now = datetime.now(UTC)
    _NEW_ATTEMPTS.executemany(
        conn,
        [
            {
                "event_id": o.event.id,
                "attempted_at": o.result.attempted_at,
                "duration_ms": o.result.duration_ms,
                "status_code": o.result.status_code,
                "error": o.result.error,
                "response_excerpt": o.result.response_excerpt,
                "next_attempt_at": o.retry_at,
            }
            for o in outcomes
        ],
    )
    _RECORD_ATTEMPT.executemany(
        conn,
        [
            {
                "b_id": o.event.id,
                "b_owner": owner,
                "b_state": o.event_state,
                "b_retry_at": o.retry_at,
                "b_status_code": o.result.status_code,
                "b_error": o.result.error,
                "b_delivered_at": o.result.attempted_at if o.result.delivered else None,
            }
            for o in outcomes
        ],
    )
    _END_WATCHES.executemany(
        conn,
        [
            {
                "b_watch_id": o.event.watch_id,
                "b_event_id": o.event.id,
                "b_event_state": o.event_state,
                "b_watch_state": o.watch_state,
                "b_now": now,
            }
            for o in outcomes
            if o.watch_state is not None
        ],
    )
    return [None] * len(outcomes)


@transaction
def release_leases(conn: Connection, *, owner: str) -> None:
    """On a graceful stop, hand back what we claimed but did not finish, so it is due at once."""
    for table in (watches, events):
        conn.execute(
            update(table)
            .where(table.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
