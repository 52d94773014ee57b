"""The queries behind the background work: claiming what is due, and recording what happened.

Work is claimed with a lease: one UPDATE marks up to N due rows as ours until a deadline and
returns them. On PostgreSQL the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so replicas sharing
the database claim disjoint rows without waiting on each other; SQLite serializes writers and
ignores the clause. If a process dies holding a lease, the rows become due again once it expires.
Every write-back is conditioned on still holding the lease and on the row's state, so a
cancellation or another replica's reclaim is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import events as webhook_events
from app.ids import event_id
from app.states import EventState, WatchState
from app.store.tables import attempts, clients, events, watches
from app.upstream import TaskSnapshot


@dataclass(frozen=True, slots=True)
class DueWatch:
    id: str
    task_id: str
    metadata: Any
    callback_url: str
    client_id: str
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
    watch: DueWatch
    snapshot: TaskSnapshot | None
    error: str | None = None


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


async def claim_due_watches(
    engine: AsyncEngine, *, owner: str, lease: float, limit: int
) -> list[DueWatch]:
    now = datetime.now(UTC)
    due = (
        select(watches.c.id)
        .where(
            watches.c.state == WatchState.ACTIVE,
            watches.c.next_poll_at <= now,
            or_(watches.c.lease_expires_at.is_(None), watches.c.lease_expires_at < now),
        )
        .order_by(watches.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(watches)
        .where(watches.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease))
        .returning(
            watches.c.id,
            watches.c.task_id,
            watches.c.metadata,
            watches.c.callback_url,
            watches.c.client_id,
            watches.c.task_status,
            watches.c.progress,
            watches.c.event_types,
            watches.c.event_seq,
        )
    )
    async with engine.begin() as conn:
        return [DueWatch(**row._mapping) for row in await conn.execute(claim)]


_MINE = (
    watches.c.id == bindparam("b_id"),
    watches.c.lease_owner == bindparam("b_owner"),
    watches.c.state == WatchState.ACTIVE,
)


async def record_polls(
    engine: AsyncEngine, *, owner: str, results: Sequence[PollResult], next_poll_at: datetime
) -> bool:
    """Write a batch of polls back in one transaction; say whether any webhook was written.

    A status that makes an event moves the watch on and inserts the event into the outbox in the
    same transaction, so a crash can never leave one without the other. Polls that make no event
    are written with one statement for the whole batch.
    """
    now = datetime.now(UTC)
    release = {
        "poll_count": watches.c.poll_count + 1,
        "last_polled_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
    }
    quiet: list[PollResult] = []
    failed: list[PollResult] = []
    eventful: list[PollResult] = []
    for result in results:
        if result.snapshot is None:
            failed.append(result)
        elif result.snapshot.status.terminal or (
            result.watch.subscribed(webhook_events.UPDATED)
            and result.watch.changed(result.snapshot)
        ):
            eventful.append(result)
        else:
            quiet.append(result)
    async with engine.begin() as conn:
        if quiet:
            await conn.execute(
                update(watches)
                .where(*_MINE)
                .values(
                    task_status=bindparam("b_status"),
                    upstream_status=bindparam("b_upstream_status"),
                    progress=bindparam("b_progress"),
                    last_poll_error=None,
                    next_poll_at=next_poll_at,
                    **release,
                ),
                [{"b_id": r.watch.id, "b_owner": owner, **_seen(r.snapshot)} for r in quiet],
            )
        if failed:
            await conn.execute(
                update(watches)
                .where(*_MINE)
                .values(last_poll_error=bindparam("b_error"), next_poll_at=next_poll_at, **release),
                [{"b_id": r.watch.id, "b_owner": owner, "b_error": r.error} for r in failed],
            )
        written = False
        for result in eventful:
            assert result.snapshot is not None
            written |= await _record_event(
                conn, owner, result.watch, result.snapshot, now, next_poll_at, release
            )
    return written


def _seen(snapshot: TaskSnapshot | None) -> dict[str, Any]:
    assert snapshot is not None
    return {
        "b_status": snapshot.status.value,
        "b_upstream_status": snapshot.upstream_status[:64],
        "b_progress": snapshot.progress,
    }


async def _record_event(
    conn: AsyncConnection,
    owner: str,
    watch: DueWatch,
    snapshot: TaskSnapshot,
    now: datetime,
    next_poll_at: datetime,
    release: dict[str, Any],
) -> bool:
    kind = webhook_events.event_type(snapshot.status)
    sending = watch.subscribed(kind) or kind in webhook_events.TERMINAL
    if snapshot.status.terminal:
        state, poll_at = WatchState.NOTIFYING, None
    else:
        state, poll_at = WatchState.ACTIVE, next_poll_at
    seq = watch.event_seq + 1
    changed = await conn.execute(
        update(watches)
        .where(*_MINE)
        .values(
            state=state,
            task_status=snapshot.status.value,
            upstream_status=snapshot.upstream_status[:64],
            progress=snapshot.progress,
            last_poll_error=None,
            next_poll_at=poll_at,
            event_seq=seq,
            **release,
        ),
        {"b_id": watch.id, "b_owner": owner},
    )
    if changed.rowcount != 1 or not sending:
        return False
    new_id = event_id(watch.id, kind if kind in webhook_events.TERMINAL else f"{kind}:{seq}")
    await conn.execute(
        insert(events).values(
            id=new_id,
            watch_id=watch.id,
            client_id=watch.client_id,
            seq=seq,
            type=kind,
            callback_url=watch.callback_url,
            payload=webhook_events.build_payload(
                event_id=new_id,
                created_at=now,
                watch_id=watch.id,
                task_id=watch.task_id,
                metadata=watch.metadata,
                snapshot=snapshot,
            ),
            state=EventState.PENDING,
            attempts=0,
            round_start=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return True


async def claim_due_events(
    engine: AsyncEngine, *, owner: str, lease: float, limit: int
) -> list[DueEvent]:
    """Claim due events, never one while an earlier event of its watch is still pending.

    That keeps each watch's webhooks in order, and no `task.updated` after the final event.
    """
    now = datetime.now(UTC)
    earlier = events.alias("earlier")
    due = (
        select(events.c.id)
        .where(
            events.c.state == EventState.PENDING,
            events.c.next_attempt_at <= now,
            or_(events.c.lease_expires_at.is_(None), events.c.lease_expires_at < now),
            ~exists().where(
                earlier.c.watch_id == events.c.watch_id,
                earlier.c.state == EventState.PENDING,
                earlier.c.seq < events.c.seq,
            ),
        )
        .order_by(events.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(events)
        .where(events.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease))
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
    async with engine.begin() as conn:
        claimed = (await conn.execute(claim)).all()
        if not claimed:
            return []
        signers = await conn.execute(
            select(clients.c.id, clients.c.signing_secret).where(
                clients.c.id.in_({row.client_id for row in claimed})
            )
        )
        secrets = {row.id: row.signing_secret for row in signers}
    return [
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


async def record_attempt(
    engine: AsyncEngine,
    *,
    owner: str,
    event: DueEvent,
    result: AttemptResult,
    retry_at: datetime | None,
) -> None:
    """Log the attempt and move the event on: delivered, due again at `retry_at`, or dead.

    Only the final event moves its watch to `completed` or `failed`.
    """
    if result.delivered:
        event_state, watch_state = EventState.DELIVERED, WatchState.COMPLETED
    elif retry_at is None:
        event_state, watch_state = EventState.FAILED, WatchState.FAILED
    else:
        event_state, watch_state = EventState.PENDING, None
    async with engine.begin() as conn:
        await conn.execute(
            insert(attempts).values(
                event_id=event.id,
                attempted_at=result.attempted_at,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                error=result.error,
                response_excerpt=result.response_excerpt,
                next_attempt_at=retry_at,
            )
        )
        changed = await conn.execute(
            update(events)
            .where(
                events.c.id == event.id,
                events.c.lease_owner == owner,
                events.c.state == EventState.PENDING,
            )
            .values(
                state=event_state,
                attempts=events.c.attempts + 1,
                next_attempt_at=retry_at,
                lease_owner=None,
                lease_expires_at=None,
                last_status_code=result.status_code,
                last_error=result.error,
                delivered_at=result.attempted_at if result.delivered else None,
            )
        )
        if changed.rowcount == 1 and watch_state is not None and event.terminal:
            await conn.execute(
                update(watches)
                .where(watches.c.id == event.watch_id, watches.c.state == WatchState.NOTIFYING)
                .values(state=watch_state, updated_at=datetime.now(UTC))
            )


async def release_leases(engine: AsyncEngine, *, owner: str) -> None:
    """On a graceful stop, hand back what we claimed but did not finish, so it is due at once."""
    async with engine.begin() as conn:
        for table in (watches, events):
            await conn.execute(
                update(table)
                .where(table.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
