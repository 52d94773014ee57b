"""Prometheus metrics, in a registry of the app's own so that several apps can share a process.

Counters and histograms count what this replica did. The gauges of the work in progress (watches
by state, the outbox, the oldest due poll, pending captures) are read from the database, so every
replica shows the same figures; a scrape reads them at most once per `max_age` seconds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError

from app.store import gauges
from app.store.database import Database
from app.upstream.circuit import CircuitState

log = logging.getLogger(__name__)


class Registration(enum.StrEnum):
    """How an answer to `POST /v1/watches` went (the `outcome` label)."""

    CREATED = "created"
    EXISTING = "existing"  # the live watch of the same task and callback, returned as it was
    REPLAYED = "replayed"  # the first answer to the same Idempotency-Key, again
    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    ERROR = "error"


class DetectionSource(enum.StrEnum):
    """Where the moment a task ended came from (the `source` label of the detection lag)."""

    UPSTREAM = "upstream"
    MIDPOINT = "midpoint"


@dataclass(frozen=True, slots=True)
class DetectionLag:
    seconds: float
    source: DetectionSource


def detection_lag(
    finished_at: datetime | None, last_looked_at: datetime | None, seen_at: datetime
) -> DetectionLag | None:
    """How long after its end a task was seen ended at `seen_at`: after the upstream's own
    completion time if it gave one, else after the midpoint of the last interval in which the
    relay did not look (the task ended in it, at no moment more likely than another).

    Never negative: an upstream clock ahead of ours must not make the relay look prescient.
    """
    if finished_at is not None:
        ended, source = finished_at, DetectionSource.UPSTREAM
    elif last_looked_at is not None:
        ended, source = last_looked_at + (seen_at - last_looked_at) / 2, DetectionSource.MIDPOINT
    else:
        return None
    return DetectionLag(max(0.0, (seen_at - ended).total_seconds()), source)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._work_read_at = -math.inf
        self._reading_work = asyncio.Lock()
        self.polls = Counter(
            "relay_polls",
            "Upstream polls, by the status seen or the kind of error.",
            ["outcome"],
            registry=self.registry,
        )
        self.poll_lateness = Histogram(
            "relay_poll_lateness_seconds",
            "How long after falling due a poll was sent: rate budget and scheduling waits.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.rate_limit_wait = Counter(
            "relay_upstream_rate_limit_wait_seconds",
            "Time polls waited for the per-key budget RELAY_UPSTREAM_RPS.",
            registry=self.registry,
        )
        self.circuit = Enum(
            "relay_upstream_circuit",
            "The upstream circuit: closed (polling), open (paused), half_open (probing).",
            states=[state.value for state in CircuitState],
            registry=self.registry,
        )
        self.poll_slots = Gauge(
            "relay_poll_slots",
            "Polls this replica lets be in flight at once, sized from the due rate and the "
            "upstream's latency (Little's law), up to RELAY_POLL_CONCURRENCY.",
            registry=self.registry,
        )
        self.poll_schedule_share = Gauge(
            "relay_poll_schedule_share",
            "Share of the polls falling due that this replica keeps up with (1 when on "
            "schedule), from how fast the delay of its polls grows; below 1, it is over capacity.",
            registry=self.registry,
        )
        self.poll_schedule_share.set(1.0)
        self.expiries = Counter(
            "relay_watches_expired",
            "Watches ended with watch.expired, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "relay_delivery_attempts",
            "Webhook delivery attempts, by outcome (delivered, retry, dead).",
            ["outcome"],
            registry=self.registry,
        )
        self.captures = Counter(
            "relay_captures",
            "Tries at capturing a succeeded task's result, by outcome (stored, retry, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.capture_seconds = Histogram(
            "relay_capture_duration_seconds",
            "Time to obtain and store one result, for the tries that stored it.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600),
            registry=self.registry,
        )
        self.capture_bytes = Counter(
            "relay_captured_bytes",
            "Bytes of results captured and stored.",
            registry=self.registry,
        )
        self.files_deleted = Counter(
            "relay_captured_files_deleted",
            "Captured files deleted once past RELAY_FILE_TTL.",
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "relay_delivery_duration_seconds",
            "Time from sending a webhook to the receiver's answer.",
            registry=self.registry,
        )
        self.registrations = Counter(
            "relay_registrations",
            "Answers to POST /v1/watches, by outcome (created, existing, replayed, refused, "
            "rate_limited, error) and reason (why it was refused or limited; empty otherwise).",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.detection_lag = Histogram(
            "relay_detection_lag_seconds",
            "From a task's end to the poll that saw it. source=upstream: the end is the "
            "upstream's own completion time (finish_time, finished_at or completed_at in its "
            "answer); source=midpoint: the answer gave none, and the end is taken halfway "
            "between the watch's previous poll (or its registration) and the poll that saw it.",
            ["source"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=self.registry,
        )
        self.delivery_lag = Histogram(
            "relay_delivery_lag_seconds",
            "From a webhook's creation to its receiver's 2xx, retries included.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400),
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "relay_upstream_request_duration_seconds",
            "Time from sending a poll to the upstream's whole answer, failed polls included.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.capture_errors = Counter(
            "relay_capture_errors",
            "Tries at capturing a result that failed, retried or not, by error code (the "
            "code of data.capture_error).",
            ["code"],
            registry=self.registry,
        )
        self.pruned = Counter(
            "relay_pruned",
            "Rows deleted by retention: finished watches (with their events, attempts, capture "
            "and course) and idempotency keys.",
            ["kind"],
            registry=self.registry,
        )
        self.watches = Gauge(
            "relay_watches",
            "Live watches by state (active, capturing, notifying), from the database. Ended "
            "ones are not counted: that would read all the history kept.",
            ["state"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "relay_outbox_pending_events",
            "Webhooks not yet delivered or given up on, due or waiting for a retry, from the "
            "database.",
            registry=self.registry,
        )
        self.outbox_due = Gauge(
            "relay_outbox_due_events",
            "Webhooks due for delivery that no replica is sending yet, from the database.",
            registry=self.registry,
        )
        self.outbox_oldest_due = Gauge(
            "relay_outbox_oldest_due_age_seconds",
            "How long the webhook longest due for delivery has waited for it; 0 when none is.",
            registry=self.registry,
        )
        self.polls_oldest_due = Gauge(
            "relay_polls_oldest_due_age_seconds",
            "How long the watch longest due for a poll has waited for it; 0 when none is.",
            registry=self.registry,
        )
        self.captures_pending = Gauge(
            "relay_captures_pending",
            "Results of succeeded tasks being captured, retries included, from the database.",
            registry=self.registry,
        )

    async def read_work_in_progress(self, db: Database, *, max_age: float) -> None:
        """Set the gauges of the work in progress from the database, unless they were read less
        than `max_age` seconds ago: a scrape must not cost a query every time, whoever scrapes.

        A database that does not answer leaves the last figures in place, so the scrape still
        answers, with what this replica counts itself.
        """
        if time.monotonic() - self._work_read_at < max_age:
            return
        async with self._reading_work:
            if time.monotonic() - self._work_read_at < max_age:
                return  # read meanwhile by the scrape this one waited for
            try:
                work = await gauges.work_in_progress(db)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("could not read the work in progress for /metrics: %s", exc)
                return
            self._work_read_at = time.monotonic()
        for state, count in work.watches.items():
            self.watches.labels(state=state.value).set(count)
        self.outbox_pending.set(work.pending_events)
        self.outbox_due.set(work.due_events)
        self.outbox_oldest_due.set(work.oldest_due_event_age)
        self.polls_oldest_due.set(work.oldest_due_poll_age)
        self.captures_pending.set(work.pending_captures)
