"""What a poll's outcome means for its watch: when to poll again, and when to give up.

Pure decisions, kept apart from the I/O in `poller.py`: the upstream's answer (or failure) in, a
`work.PollResult` to write back out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.delivery.bodies import ExpiryReason
from app.delivery.webhooks import Expiry
from app.upstream import TaskSnapshot, UpstreamError, UpstreamErrorKind
from app.work import DueWatch, PollResult

#: A refused key is tried this many times in a row before the watch ends: a gateway hiccup
#: should not end a watch, a revoked key should not be polled for a day.
REFUSALS_ALLOWED = 3
#: A poll later than this share of its interval starts the watch's schedule afresh, so that two
#: polls of a watch are never closer together than half its interval.
CATCH_UP_SHARE = 0.5
#: Backoff delays are stretched by a random share of up to this much, so watches that failed
#: together do not all come back together.
BACKOFF_JITTER = 0.5


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """
    :param interval: seconds between polls of a watch that registered no interval of its own.
    :param backoff_max: the longest wait between polls of a failing upstream.
    :param not_found_grace: how long a task may stay unknown to the upstream.
    """

    interval: float
    backoff_max: float
    not_found_grace: float

    def past_deadline(self, watch: DueWatch, now: datetime) -> PollResult | None:
        if now < watch.deadline_at:
            return None
        message = (
            "the task had not ended by the watch's deadline, "
            f"{watch.deadline_at.isoformat().replace('+00:00', 'Z')}"
        )
        return PollResult(
            watch, expiry=Expiry(ExpiryReason.DEADLINE_EXCEEDED, message), polled=False
        )

    def after_snapshot(self, watch: DueWatch, snapshot: TaskSnapshot, now: datetime) -> PollResult:
        return PollResult(watch, snapshot, next_poll_at=self._on_schedule(watch, now))

    def after_error(
        self, watch: DueWatch, error: UpstreamError | None, message: str, now: datetime
    ) -> PollResult:
        """`error` is None when the poll failed on our side, which is retried like a 5xx."""
        kind = error.kind if error is not None else None
        if kind is UpstreamErrorKind.NOT_FOUND:
            return self._not_found(watch, message, now)
        refusals = watch.consecutive_refusals + 1 if kind is UpstreamErrorKind.UNAUTHORIZED else 0
        if refusals >= REFUSALS_ALLOWED:
            expiry = Expiry(
                ExpiryReason.UPSTREAM_UNAUTHORIZED,
                f"the upstream refused the key {refusals} times in a row ({message})",
            )
            return PollResult(watch, error=message, expiry=expiry)
        errors = watch.consecutive_errors + 1
        return PollResult(
            watch,
            error=message,
            next_poll_at=self._next(watch, now, self._backoff(watch, errors)),
            # A failed poll says nothing about the task: the grace period runs on.
            not_found_since=watch.not_found_since,
            consecutive_errors=errors,
            consecutive_refusals=refusals,
        )

    def _not_found(self, watch: DueWatch, message: str, now: datetime) -> PollResult:
        """A just-submitted task can be unknown for a moment: only a lasting absence ends it."""
        since = watch.not_found_since or now
        if (now - since).total_seconds() >= self.not_found_grace:
            expiry = Expiry(
                ExpiryReason.TASK_NOT_FOUND,
                f"the upstream did not know this task for {self.not_found_grace:g} seconds; "
                "check the task id and that the watch polls with the key that submitted it",
            )
            return PollResult(watch, error=message, expiry=expiry)
        return PollResult(
            watch,
            error=message,
            next_poll_at=self._on_schedule(watch, now),
            not_found_since=since,
        )

    def _interval(self, watch: DueWatch) -> float:
        return watch.poll_interval if watch.poll_interval is not None else self.interval

    def _backoff(self, watch: DueWatch, errors: int) -> float:
        """Doubling from the watch's interval, capped, but never more often than the interval."""
        interval = self._interval(watch)
        delay = interval * 2.0 ** min(errors - 1, 30) * (1 + random.random() * BACKOFF_JITTER)
        return max(interval, min(self.backoff_max, delay))

    def _on_schedule(self, watch: DueWatch, now: datetime) -> datetime:
        """An interval after the poll was due, not after it was made: the relay's own delays
        (the wait for the next tick, a busy moment) must not add up from one poll to the next,
        or a watch of 5 s would be polled every 5.5. A poll late by more than half an interval
        (an outage, a backlog) starts the schedule afresh instead of hurrying to catch up."""
        interval = self._interval(watch)
        if (now - watch.due_at).total_seconds() > interval * CATCH_UP_SHARE:
            return self._next(watch, now, interval)
        return self._next(watch, watch.due_at, interval)

    def _next(self, watch: DueWatch, start: datetime, delay: float) -> datetime:
        """Never later than the deadline, so that a watch expires on time."""
        return min(start + timedelta(seconds=delay), watch.deadline_at)
