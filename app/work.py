"""The units of background work: what is claimed from the store, and what is written back.

The poller, its policy and the deliverer decide with these; the store claims and records them.
Kept apart from both, so that neither the decisions nor the SQL depend on the other's module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.delivery import webhooks
from app.states import EventState, WatchState
from app.upstream import TaskSnapshot


@dataclass(frozen=True, slots=True)
class DueWatch:
    """A watch claimed for one poll, with everything its poll and its write-back need."""

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
        return kind in (self.event_types or webhooks.DEFAULT_SUBSCRIPTION)

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
    expiry: webhooks.Expiry | None = None
    polled: bool = True

    @property
    def final(self) -> bool:
        return self.expiry is not None or (
            self.snapshot is not None and self.snapshot.status.terminal
        )


@dataclass(frozen=True, slots=True)
class DueEvent:
    """A webhook claimed for one delivery attempt, with the secret that signs it."""

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
        return self.type in webhooks.TERMINAL


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
