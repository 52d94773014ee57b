"""Polling the upstream for every watch that is due."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from app.delivery import webhooks
from app.encryption import KeyBox, UndecryptableError, watch_key
from app.metrics import Metrics, detection_lag
from app.polling.capacity import CapacityWatch
from app.polling.policy import PollPolicy
from app.polling.sizing import LoopLag, PollSizing
from app.renewal import LeaseRenewal
from app.slots import Slots
from app.store import polls
from app.store.batching import Batcher
from app.store.database import Database
from app.upstream import TaskSource, UpstreamError
from app.upstream.circuit import Circuit
from app.upstream.ratelimit import RateLimiter
from app.work import DueWatch, PollResult

log = logging.getLogger(__name__)

#: The fewest polls let be in flight, whatever the upstream: enough for one nearby (about
#: 2,000 polls a second at 10,000 watches, each answered within milliseconds), the cap that was
#: fixed before it was sized from what the relay observes.
SLOTS_FLOOR = 100


class Poller:
    """Keeps as many upstream requests in flight as the due rate and the upstream's latency call
    for (`PollSizing`), up to `concurrency`; each result is recorded as it comes
    (together with those that come meanwhile: one transaction for the lot).

    Polls run as independent tasks rather than in batches: a batch would hold every result until
    its slowest request ended, and leave the upstream idle while it was claimed and recorded.

    :param circuit: rations polling while the upstream is failing; watches whose deadline has
        passed are still ended, since that needs no request.
    :param rate_limiter: spaces the requests made with each upstream key, if a budget is set.
    :param key_box: decrypts the upstream keys that watches brought, if any may have.
    :param capture_timeout: how long the result of a succeeded task may take to be captured;
        None when results are not captured.
    :param on_events: called when polls have written webhook events or captures, so their work
        starts at once instead of at its next tick.
    :param on_slot_free: called when slots are free again while due watches were left waiting
        for them, so they are claimed at once rather than at the next tick.
    """

    def __init__(
        self,
        *,
        db: Database,
        upstream: TaskSource,
        owner: str,
        policy: PollPolicy,
        lease: float,
        concurrency: int,
        circuit: Circuit,
        rate_limiter: RateLimiter | None,
        key_box: KeyBox | None,
        metrics: Metrics,
        capture_timeout: float | None,
        on_events: Callable[[], None],
        on_slot_free: Callable[[], None],
    ) -> None:
        self._db = db
        self._upstream = upstream
        self._owner = owner
        self._policy = policy
        self._lease = lease
        self._circuit = circuit
        self._rate_limiter = rate_limiter
        self._key_box = key_box
        self._metrics = metrics
        self._capture_timeout = capture_timeout
        self._on_events = on_events
        self._capacity = CapacityWatch(on_share=metrics.poll_schedule_share.set)
        self._loop_lag = LoopLag()
        self._sizing = PollSizing(
            ceiling=concurrency,
            floor=SLOTS_FLOOR,
            on_resize=self._resize,
            loop_lag=self._loop_lag.take,
        )
        self._slots = Slots(self._sizing.size, on_refill=on_slot_free)
        self._leases = LeaseRenewal(
            lambda ids: polls.renew_leases(db, owner=owner, ids=ids, lease=lease)
        )
        metrics.poll_slots.set(self._sizing.size)
        self._recorder: Batcher[PollResult, None] = Batcher(self._record)

    async def run(self) -> None:
        """Fill the free polling slots with due watches, oldest due first."""
        self._loop_lag.start()
        while count := self._slots.to_fill():
            allowed = self._circuit.allowance(count)
            limit = allowed or count
            due = await polls.claim_due_watches(
                self._db,
                owner=self._owner,
                lease=self._lease,
                limit=limit,
                past_deadline_only=not allowed,
            )
            for watch in due:
                self._slots.start(self._poll_and_record(watch))
            self._slots.more_due(len(due) == limit)
            self._sizing.left_waiting(len(due) == limit)
            if len(due) < limit or limit < count:
                return

    async def renew_leases(self) -> None:
        """Keep the watches whose polls are under way ours, however long the upstream takes."""
        await self._leases.renew()

    async def drain(self, grace: float) -> None:
        """Let polls in flight finish and be recorded (graceful shutdown)."""
        self._loop_lag.stop()
        await self._slots.drain(grace)

    def _resize(self, size: int) -> None:
        self._slots.resize(size)
        self._metrics.poll_slots.set(size)

    async def _poll_and_record(self, watch: DueWatch) -> None:
        with self._leases.holding(watch.id):
            await self._poll_and_record_held(watch)

    async def _poll_and_record_held(self, watch: DueWatch) -> None:
        """The slot is given back when the request is done; the watch stays leased until its
        result is recorded."""
        try:
            result = await self._poll(watch)
        finally:
            self._slots.give_back()
        if result.expiry is not None:
            self._metrics.expiries.labels(reason=result.expiry.reason.value).inc()
        if log.isEnabledFor(logging.DEBUG):
            status = result.snapshot.status.value if result.snapshot is not None else None
            log.debug("task polled", extra={**_ids(watch), "status": status, "error": result.error})
        try:
            await self._recorder.submit(result)
        except Exception:
            # The lease will lapse and the watch be polled again: nothing is lost.
            log.exception("could not record a poll", extra=_ids(watch))

    async def _record(self, results: Sequence[PollResult]) -> list[None]:
        moved = set(
            await polls.record_polls(
                self._db, owner=self._owner, results=results, capture_timeout=self._capture_timeout
            )
        )
        if moved:
            self._on_events()
            self._log_moves([result for result in results if result.watch.id in moved])
        return [None] * len(results)

    def _log_moves(self, moved: Sequence[PollResult]) -> None:
        """Once written: the task's end (or the watch's expiry) and the webhook that tells of
        it, unless the result is captured first (the capturer tells of that webhook)."""
        for result in moved:
            ids = _ids(result.watch)
            if result.expiry is not None:
                log.info("watch expired", extra={**ids, "reason": result.expiry.reason.value})
            elif result.final and result.snapshot is not None:
                log.info("task ended", extra={**ids, "status": result.snapshot.status.value})
            if self._capture_timeout is not None and result.succeeded:
                continue
            kind, event_id = webhooks.event_of(result)
            log.info("event created", extra={**ids, "event_id": event_id, "event_type": kind})

    async def _poll(self, watch: DueWatch) -> PollResult:
        now = datetime.now(UTC)
        expired = self._policy.past_deadline(watch, now)
        if expired is not None:
            return expired
        try:
            key = watch_key(self._key_box, watch.upstream_api_key_encrypted)
        except UndecryptableError as exc:
            log.error("cannot poll the task: %s", exc, extra=_ids(watch))
            return self._policy.after_error(watch, None, str(exc), now)
        if self._rate_limiter is not None:
            waited = await self._rate_limiter.wait(self._upstream.key_for(key))
            self._metrics.rate_limit_wait.inc(waited)
        late = max(0.0, (datetime.now(UTC) - watch.due_at).total_seconds())
        self._metrics.poll_lateness.observe(late)
        self._sizing.started(late)
        self._capacity.sent(late)
        started = time.perf_counter()
        failed = True
        try:
            snapshot = await self._upstream.fetch(watch.task_id, api_key=key)
            failed = False
        except UpstreamError as exc:
            failed = exc.kind.upstream_unwell
            self._circuit.record(failed=failed)
            self._metrics.polls.labels(outcome=exc.kind.value).inc()
            message = _redact(str(exc), self._upstream.key_for(key))
            return self._policy.after_error(watch, exc, message, now)
        except Exception as exc:
            # One odd answer must not sink the batch it came in: record it and poll again later.
            self._circuit.record(failed=True)
            self._metrics.polls.labels(outcome="internal_error").inc()
            log.exception("poll failed unexpectedly", extra=_ids(watch))
            return self._policy.after_error(
                watch, None, f"internal error: {type(exc).__name__}", now
            )
        finally:
            took = time.perf_counter() - started
            self._metrics.upstream_seconds.observe(took)
            self._sizing.finished(took, failed=failed)
        self._circuit.record(failed=False)
        self._metrics.polls.labels(outcome=snapshot.status.value).inc()
        result = self._policy.after_snapshot(watch, snapshot, now)
        if snapshot.status.terminal:
            lag = detection_lag(snapshot.finished_at, watch.last_looked_at, datetime.now(UTC))
            if lag is not None:
                self._metrics.detection_lag.labels(source=lag.source).observe(lag.seconds)
                return replace(result, detection_lag=lag.seconds)
        return result


def _ids(watch: DueWatch) -> dict[str, str]:
    return {"watch_id": watch.id, "task_id": watch.task_id, "client_id": watch.client_id}


def _redact(message: str, key: str | None) -> str:
    """An upstream that echoes the key in an error must not get it into logs or the API."""
    return message.replace(key, "[redacted]") if key else message
