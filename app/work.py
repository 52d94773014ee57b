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
from app.upstream import TaskSnapshot, TaskStatus


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
    #: When the relay last looked at the task before this poll: its previous poll (whatever it
    #: found), or the registration. A task this poll finds ended is taken to have ended since.
    last_looked_at: datetime | None = None

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
    #: Seconds from the task's end to this poll, when it is the one that saw it end.
    detection_lag: float | None = None

    @property
    def final(self) -> bool:
        return self.expiry is not None or (
            self.snapshot is not None and self.snapshot.status.terminal
        )

    @property
    def status_changed(self) -> bool:
        """The poll found the task in another status than the last one seen (or its first)."""
        return self.snapshot is not None and self.snapshot.status.value != self.watch.task_status

    @property
    def succeeded(self) -> bool:
        """The task was seen to succeed (its result may be captured before its event)."""
        return self.expiry is None and (
            self.snapshot is not None and self.snapshot.status is TaskStatus.SUCCEEDED
        )


@dataclass(frozen=True, slots=True)
class DueEvent:
    """A webhook claimed for one delivery attempt, with the secrets that sign it."""

    id: str
    watch_id: str
    client_id: str
    type: str
    callback_url: str
    payload: str
    attempts: int
    round_start: int
    created_at: datetime
    #: The client's signing secret, and the one a rotation replaced while their overlap lasts;
    #: encrypted (`encryption.py`), as stored.
    signing_secrets: tuple[str, ...]

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


@dataclass(frozen=True, slots=True)
class DueCapture:
    """A succeeded task's result, claimed for one try at obtaining and storing it.

    Where the result is: `inline_data` (a `data:` URI), else `source_url` (a link, or another
    string the upstream put there, such as Veo's `"expired"`), else the upstream's download API.
    """

    id: str
    client_id: str
    source_url: str | None
    inline_data: str | None
    attempts: int
    deadline_at: datetime
    task_id: str
    upstream_api_key_encrypted: str | None

    @property
    def uses_download_api(self) -> bool:
        """No inline data and no link: the result is had from the upstream's download API."""
        return self.inline_data is None and self.source_url is None


@dataclass(frozen=True, slots=True)
class CapturedWatch:
    """What the final event of a watch whose result was captured is made from."""

    id: str
    task_id: str
    metadata: Any
    client_id: str
    callback_url: str
    event_seq: int


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    content_type: str
    size_bytes: int
    sha256: str
    stored_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """One try at a capture: stored, failed for good (`error` and no `retry_at`), or due again
    at `retry_at`. `report` is what the final event says of it."""

    capture: DueCapture
    stored: StoredFile | None
    error: webhooks.CaptureError | None
    retry_at: datetime | None
    report: webhooks.CaptureReport | None

    @property
    def final(self) -> bool:
        return self.retry_at is None
