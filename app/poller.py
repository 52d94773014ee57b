"""Polling the upstream for every watch that is due."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import Metrics
from app.store import claims
from app.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)


class Poller:
    """Claims due watches in batches, queries the upstream concurrently, writes back in bulk.

    :param on_events: called when a batch has written webhook events, so delivery starts at once
        instead of at its next tick.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        upstream: UpstreamClient,
        owner: str,
        interval: float,
        lease: float,
        batch_size: int,
        metrics: Metrics,
        on_events: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._upstream = upstream
        self._owner = owner
        self._interval = timedelta(seconds=interval)
        self._lease = lease
        self._batch_size = batch_size
        self._metrics = metrics
        self._on_events = on_events

    async def run(self) -> None:
        """Poll until nothing is due; a full batch means more may be waiting."""
        while await self._poll_batch() == self._batch_size:
            pass

    async def _poll_batch(self) -> int:
        due = await claims.claim_due_watches(
            self._engine, owner=self._owner, lease=self._lease, limit=self._batch_size
        )
        if not due:
            return 0
        results = await asyncio.gather(*(self._poll(watch) for watch in due))
        wrote_events = await claims.record_polls(
            self._engine,
            owner=self._owner,
            results=results,
            next_poll_at=datetime.now(UTC) + self._interval,
        )
        if wrote_events:
            self._on_events()
        return len(due)

    async def _poll(self, watch: claims.DueWatch) -> claims.PollResult:
        try:
            snapshot = await self._upstream.fetch(watch.task_id)
        except UpstreamError as exc:
            self._metrics.polls.labels(outcome=exc.kind.value).inc()
            log.info("poll of task %s failed: %s", watch.task_id, exc)
            return claims.PollResult(watch, None, str(exc))
        except Exception as exc:
            # One odd answer must not sink the batch it came in: record it and poll again later.
            self._metrics.polls.labels(outcome="internal_error").inc()
            log.exception("poll of task %s failed unexpectedly", watch.task_id)
            return claims.PollResult(watch, None, f"internal error: {type(exc).__name__}")
        self._metrics.polls.labels(outcome=snapshot.status.value).inc()
        return claims.PollResult(watch, snapshot)
