"""What the state gauges of `/metrics` read: the work in the database, counted and timed, the same
whichever replica asks.

Every statement reads an index, and only its live part: watches still moving, events not yet
delivered, captures still pending. Ended watches, delivered events and stored captures are never
read, so the cost does not grow with the history a long retention keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from app.states import LIVE_WATCH_STATES, WatchState
from app.store import captures, leases, outbox, polls
from app.store.database import transaction
from app.store.tables import UNFINISHED, events, watches

#: Live watches by state, from the index that claims polls (state first).
_WATCHES_BY_STATE = (
    select(watches.c.state, func.count()).where(UNFINISHED).group_by(watches.c.state)
)
#: When the watch longest due for a poll, and not being polled, fell due.
_OLDEST_DUE_POLL = (
    select(watches.c.next_poll_at)
    .where(
        polls.ACTIVE,
        watches.c.next_poll_at <= leases.NOW,
        leases.unleased(watches),
    )
    .order_by(watches.c.next_poll_at)
    .limit(1)
)
#: Webhooks still to deliver, due or waiting for a retry.
_PENDING_EVENTS = select(func.count()).where(outbox.PENDING)
#: Webhooks the deliverer would claim now, and when the one longest due fell due.
_DUE_EVENTS = select(func.count(), func.min(events.c.next_attempt_at)).where(
    *outbox.DUE, leases.unleased(events)
)
#: Results being captured, with retries.
_PENDING_CAPTURES = select(func.count()).where(captures.PENDING)


@dataclass(frozen=True, slots=True)
class WorkInProgress:
    watches: dict[WatchState, int]
    pending_events: int
    due_events: int
    #: Seconds the longest-waiting due webhook has waited; 0 when none is due.
    oldest_due_event_age: float
    #: Seconds the longest-waiting due poll has waited; 0 when none is due.
    oldest_due_poll_age: float
    pending_captures: int


@transaction
def work_in_progress(conn: Connection) -> WorkInProgress:
    """One transaction, so the figures describe one moment (on PostgreSQL; SQLite has a single
    writer anyway)."""
    now = datetime.now(UTC)
    counts = dict.fromkeys(LIVE_WATCH_STATES, 0)
    for state, count in conn.execute(_WATCHES_BY_STATE):
        counts[WatchState(state)] = count
    oldest_poll = conn.execute(_OLDEST_DUE_POLL, {"now": now}).scalar()
    due_events, oldest_event = conn.execute(_DUE_EVENTS, {"now": now}).one()
    return WorkInProgress(
        watches=counts,
        pending_events=conn.execute(_PENDING_EVENTS).scalar_one(),
        due_events=due_events,
        oldest_due_event_age=_age(oldest_event, now),
        oldest_due_poll_age=_age(oldest_poll, now),
        pending_captures=conn.execute(_PENDING_CAPTURES).scalar_one(),
    )


def _age(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0
