"""Delivering webhooks from the outbox, each with its own retry schedule."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from app.delivery.posting import Answer, WebhookPoster
from app.delivery.signing import signature_headers
from app.encryption import KeyBox, UndecryptableError
from app.metrics import Metrics
from app.slots import Slots
from app.store import client_apps, outbox
from app.store.batching import Batcher
from app.store.database import Database
from app.transport import USER_AGENT
from app.work import AttemptResult, DueEvent, Outcome
from app.workers import WorkerExited

log = logging.getLogger(__name__)

#: The Standard Webhooks way for a receiver to say "never send this again".
GONE = 410
#: A receiver's `Retry-After` is obeyed within these bounds, in seconds.
MIN_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 24 * 3600.0


class Deliverer:
    """Keeps up to `concurrency` deliveries in flight, each recorded as it ends (together with
    those that end meanwhile: one transaction for the lot).

    Deliveries run as independent tasks rather than in batches, so one slow receiver holds one
    slot, not everyone's turn. Where webhooks may go is the poster's transport's to enforce
    (`pinning.PinnedTransport`): a destination it refuses is a failed attempt, "refused: …".

    :param poster: sends each webhook, from this process or from HTTP processes.
    :param key_box: decrypts the client apps' signing secrets.
    :param on_slot_free: called when slots are free again while due events were left waiting
        for them, so they are claimed at once rather than at the next tick.
    :param on_due_in: called with the seconds until an event falls due (a retry just recorded,
        or the soonest one pending after a claim that found fewer due than slots free), so that
        it is claimed then rather than at a later tick.
    """

    def __init__(
        self,
        *,
        db: Database,
        poster: WebhookPoster,
        owner: str,
        lease: float,
        retry_schedule: Sequence[float],
        retry_jitter: float,
        concurrency: int,
        key_box: KeyBox,
        metrics: Metrics,
        on_slot_free: Callable[[], None],
        on_due_in: Callable[[float], None],
    ) -> None:
        self._db = db
        self._decrypt = functools.lru_cache(maxsize=1024)(
            functools.partial(key_box.decrypt, what=client_apps.SECRET_NAME)
        )
        self._poster = poster
        self._owner = owner
        self._lease = lease
        self._schedule = tuple(retry_schedule)
        self._jitter = retry_jitter
        self._metrics = metrics
        self._slots = Slots(concurrency, on_refill=on_slot_free)
        self._on_due_in = on_due_in
        self._recorder: Batcher[Outcome, None] = Batcher(
            lambda outcomes: outbox.record_attempts(db, owner=owner, outcomes=outcomes)
        )

    async def run(self) -> None:
        """Fill the free delivery slots with due events."""
        while count := self._slots.to_fill():
            claimed = await outbox.claim_due_events(
                self._db, owner=self._owner, lease=self._lease, limit=count
            )
            for event in claimed.events:
                self._slots.start(self._deliver(event))
            self._slots.more_due(len(claimed.events) == count)
            if claimed.next_due_at is not None:
                self._claim_again_at(claimed.next_due_at)
            if len(claimed.events) < count:
                return

    async def drain(self, grace: float) -> None:
        """Let deliveries in flight finish (graceful shutdown); the rest keep their lease."""
        await self._slots.drain(grace)

    async def _deliver(self, event: DueEvent) -> None:
        """The slot is given back once the attempt is over; the event stays leased until its
        outcome is recorded. Held through the recording, which on PostgreSQL waits on the
        server, the slots capped deliveries at their number over that wait (768 a second)."""
        try:
            result = await self._attempt(event)
        finally:
            self._slots.give_back()
        await self._record(event, result)

    async def _record(self, event: DueEvent, result: AttemptResult) -> None:
        retry_at = None if result.delivered else self._next_attempt(event, result)
        outcome = "delivered" if result.delivered else ("retry" if retry_at else "dead")
        self._metrics.deliveries.labels(outcome=outcome).inc()
        if result.delivered:
            lag = datetime.now(UTC) - event.created_at
            self._metrics.delivery_lag.observe(max(0.0, lag.total_seconds()))
        try:
            await self._recorder.submit(Outcome(event, result, retry_at))
        except Exception:
            # The lease will lapse and the event be delivered again: at least once, never lost.
            log.exception("could not record a delivery", extra=_ids(event))
            return
        _log_attempt(event, result, retry_at)
        if retry_at is not None:
            self._claim_again_at(retry_at)

    def _signing_secrets(self, event: DueEvent) -> list[str]:
        """The event's signing secrets in clear, each decrypted once per process, not once per
        webhook (a decryption costs about as much as the rest of the signing)."""
        return [self._decrypt(secret) for secret in event.signing_secrets]

    def _claim_again_at(self, due_at: datetime) -> None:
        self._on_due_in((due_at - datetime.now(UTC)).total_seconds())

    def _next_attempt(self, event: DueEvent, result: AttemptResult) -> datetime | None:
        """When to try again, or None to stop: the schedule is used up, or the receiver said 410.

        A redelivery starts a new round (`round_start`), which follows the schedule afresh.
        """
        step = event.attempts - event.round_start
        if result.status_code == GONE or step >= len(self._schedule):
            return None
        if result.retry_after is not None:
            delay = min(max(result.retry_after, MIN_RETRY_AFTER), MAX_RETRY_AFTER)
        else:
            delay = self._schedule[step] * random.uniform(1 - self._jitter, 1 + self._jitter)
        return datetime.now(UTC) + timedelta(seconds=delay)

    async def _attempt(self, event: DueEvent) -> AttemptResult:
        at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signature_headers(
                    self._signing_secrets(event), message_id=event.id, body=event.payload, at=at
                ),
            }
            answer = await self._poster.post(event.callback_url, headers, event.payload.encode())
        except UndecryptableError as exc:
            # Not sent unsigned: the event follows its schedule, and `recover` sends it again
            # once the key is configured again.
            log.error("event not sent: %s", exc, extra=_ids(event))
            answer = Answer(None, error=f"not sent: {exc}")
        except WorkerExited as exc:
            answer = Answer(None, error=f"connection error: {exc}")
        except Exception as exc:
            # Recorded as a failed attempt so the event still follows its schedule to the end,
            # instead of being reclaimed and failing the same way forever.
            log.exception("delivery failed unexpectedly", extra=_ids(event))
            answer = Answer(None, error=f"internal error: {type(exc).__name__}")
        status_code, error = answer.status_code, answer.error
        if status_code == GONE:
            error = "HTTP 410: the receiver asked for no more deliveries of this event"
        elif status_code is not None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
        elapsed = time.perf_counter() - started
        self._metrics.delivery_seconds.observe(elapsed)
        return AttemptResult(
            attempted_at=at,
            duration_ms=round(elapsed * 1000),
            status_code=status_code,
            error=error,
            response_excerpt=answer.excerpt,
            retry_after=_retry_after(answer.retry_after, at),
        )


def _ids(event: DueEvent) -> dict[str, str]:
    return {
        "event_id": event.id,
        "event_type": event.type,
        "watch_id": event.watch_id,
        "client_id": event.client_id,
    }


def _log_attempt(event: DueEvent, result: AttemptResult, retry_at: datetime | None) -> None:
    """Every attempt, once recorded, so that a webhook's course can be followed line by line."""
    fields = {
        **_ids(event),
        "attempt": event.attempts + 1,
        "status_code": result.status_code,
        "duration_ms": result.duration_ms,
    }
    if result.delivered:
        log.info("delivery succeeded", extra=fields)
    elif retry_at is not None:
        retry = retry_at.isoformat().replace("+00:00", "Z")
        log.info("delivery failed", extra={**fields, "error": result.error, "retry_at": retry})
    else:
        log.warning("delivery dead-lettered", extra={**fields, "error": result.error})


def _retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` is either seconds or an HTTP date; anything else is ignored."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
