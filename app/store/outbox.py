"""The queries of delivery: claiming the webhooks that are due, and recording each attempt.

The outbox is the `events` table: a webhook is written there in the same transaction as the
status that caused it (`polls.record_polls`), and leaves it delivered, dead or cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, exists, func, insert, select, update

from app.states import EventState, WatchState
from app.store import leases
from app.store.client_apps import signing_secrets
from app.store.database import transaction
from app.store.prepared import Prepared
from app.store.tables import attempts, clients, constant, events, watches
from app.work import DueEvent, Outcome

#: `pending` and no attempt, as the partial indexes of pending events know them
#: (`tables.PENDING_EVENT`).
_PENDING = constant(EventState.PENDING)
_NONE = constant(0)
#: Events still to deliver, as their indexes know them.
PENDING = events.c.state == _PENDING
_EARLIER = events.alias("earlier")
#: The sequence number of the first pending event of the event's watch.
_FIRST_PENDING_SEQ = (
    select(func.min(_EARLIER.c.seq))
    .where(_EARLIER.c.watch_id == events.c.watch_id, _EARLIER.c.state == _PENDING)
    .scalar_subquery()
)
#: What makes an event due for delivery (once no one holds it).
DUE = (
    PENDING,
    events.c.next_attempt_at <= leases.NOW,
    # Never while an earlier event of the same watch is pending: each watch's webhooks go out
    # in sequence, and no `task.updated` after the final event. A scalar subquery rather than
    # NOT EXISTS, which PostgreSQL turns into a join: planned before the table had statistics (the
    # generic plan of a relay started on a new database), that join read every pending event
    # for each one considered, and a claim in a backlog of 8,000 took 27 s. A scalar subquery
    # stays one lookup in `ix_events_pending_watch_id_seq` per event, whatever the statistics.
    events.c.seq == _FIRST_PENDING_SEQ,
)
_CLAIMED_COLUMNS = (
    events.c.id,
    events.c.watch_id,
    events.c.type,
    events.c.callback_url,
    events.c.payload,
    events.c.attempts,
    events.c.round_start,
    events.c.client_id,
    events.c.created_at,
)

#: Claim due webhooks never attempted yet, soonest due first.
_CLAIM_FRESH = leases.claim(
    events,
    *DUE,
    events.c.attempts == _NONE,
    order_by=events.c.next_attempt_at,
    returning=_CLAIMED_COLUMNS,
)
#: Claim due retries, soonest due first.
_CLAIM_RETRIES = leases.claim(
    events,
    *DUE,
    events.c.attempts > _NONE,
    order_by=events.c.next_attempt_at,
    returning=_CLAIMED_COLUMNS,
)
#: When the soonest pending event not yet due falls due (it is not leased: its lease ended when
#: its attempt was recorded).
_NEXT_DUE = (
    select(events.c.next_attempt_at)
    .where(PENDING, events.c.next_attempt_at > leases.NOW)
    .order_by(events.c.next_attempt_at)
    .limit(1)
)
#: The signing secrets of the clients `ids` (encrypted), with the one a rotation replaced.
_SIGNERS = select(
    clients.c.id,
    clients.c.signing_secret,
    clients.c.previous_signing_secret,
    clients.c.previous_secret_until,
).where(clients.c.id.in_(bindparam("ids", expanding=True)))
#: Log attempts.
_NEW_ATTEMPTS = Prepared(insert(attempts))
#: Move an event on after an attempt, while it is still ours and pending (a cancel wins).
_RECORD_ATTEMPT = Prepared(
    update(events)
    .where(*leases.still_ours(events, EventState.PENDING))
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
#: End a notifying watch, if its final event really reached the state that ends it.
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
    """
    now = datetime.now(UTC)
    claimed = list(
        conn.execute(
            _CLAIM_FRESH, leases.claim_params(owner=owner, lease=lease, limit=limit, now=now)
        )
    )
    if len(claimed) < limit:
        retries = leases.claim_params(owner=owner, lease=lease, limit=limit - len(claimed), now=now)
        claimed += conn.execute(_CLAIM_RETRIES, retries)
    next_due_at = None
    if len(claimed) < limit:
        next_due_at = conn.execute(_NEXT_DUE, {"now": now}).scalar()
    if not claimed:
        return ClaimedEvents([], next_due_at)
    signers = conn.execute(_SIGNERS, {"ids": list({row.client_id for row in claimed})})
    secrets = {row.id: signing_secrets(row, now) for row in signers}
    due = [
        DueEvent(
            id=row.id,
            watch_id=row.watch_id,
            client_id=row.client_id,
            type=row.type,
            callback_url=row.callback_url,
            payload=row.payload,
            attempts=row.attempts,
            round_start=row.round_start,
            created_at=row.created_at,
            signing_secrets=secrets[row.client_id],
        )
        for row in claimed
    ]
    return ClaimedEvents(due, next_due_at)


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
