"""Retention: the scheduled job that deletes finished watches once `RELAY_RETENTION` has passed
since they finished, and idempotency keys after their day, then gives SQLite's freed space back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from app.metrics import Metrics
from app.store import idempotency, retention
from app.store.database import Database

log = logging.getLogger(__name__)

#: Watches (or idempotency keys) deleted per transaction: a few milliseconds on SQLite.
BATCH = 200
#: Free pages given back per transaction (4 MB of SQLite's 4 KB pages).
RECLAIM_PAGES = 1024
#: After each transaction, a pause this many times as long as it took: a backlog (the first run
#: on a database that has never deleted anything) takes at most a fifth of the event loop.
REST = 4.0


class Pruner:
    """A run deletes everything past its time, a batch per transaction, resting between them.

    A watch whose captured file is still served is kept until the file has expired too (the
    file cleanup deletes it, then the watch can go): with `file_ttl` longer than the retention,
    watches that had a capture are kept `file_ttl` instead, so none is found past its time only
    to be passed over, run after run.
    """

    def __init__(
        self,
        *,
        db: Database,
        metrics: Metrics,
        retention: float,
        file_ttl: float | None = None,
        batch: int = BATCH,
    ) -> None:
        """:param retention: seconds a watch is kept after it finished; 0 keeps everything.
        :param file_ttl: seconds captured files are kept, when results are captured."""
        self._db = db
        self._pruned = metrics.pruned
        self._keep = timedelta(seconds=max(retention, file_ttl or 0.0)) if retention else None
        self._batch = batch

    async def prepare(self) -> None:
        """Before the relay starts working: a SQLite file made without incremental auto-vacuum
        is rewritten with it, once, so that pruning can give space back."""
        if self._keep is not None and await retention.enable_incremental_vacuum(self._db):
            log.info("database rewritten to give space back")

    async def run(self) -> None:
        if self._keep is None:
            return
        now = datetime.now(UTC)
        watches = await self._prune_watches(now - self._keep)
        keys = await self._prune_keys(now - idempotency.KEY_LIFETIME)
        if watches or keys:
            finished_before = (now - self._keep).isoformat(timespec="seconds")
            log.info(
                "retention pruned",
                extra={
                    "watches": watches,
                    "idempotency_keys": keys,
                    "finished_before": finished_before.replace("+00:00", "Z"),
                },
            )
            await self._give_space_back()

    async def _prune_watches(self, finished_before: datetime) -> int:
        deleted = 0
        while True:
            started = time.perf_counter()
            pruned = await retention.prune_watches(
                self._db, finished_before=finished_before, limit=self._batch
            )
            deleted += pruned.deleted
            self._pruned.labels(kind="watches").inc(pruned.deleted)
            # Fewer than asked for: none left. None deleted: all held elsewhere, for now.
            if pruned.found < self._batch or not pruned.deleted:
                return deleted
            await _rest(started)

    async def _prune_keys(self, created_before: datetime) -> int:
        deleted = 0
        while True:
            started = time.perf_counter()
            batch = await retention.prune_idempotency_keys(
                self._db, created_before=created_before, limit=self._batch
            )
            deleted += batch
            self._pruned.labels(kind="idempotency_keys").inc(batch)
            if batch < self._batch:
                return deleted
            await _rest(started)

    async def _give_space_back(self) -> None:
        """Until no page is free, or none more could be freed (a file still without incremental
        auto-vacuum: `prepare` was not run)."""
        free: int | None = None
        while True:
            started = time.perf_counter()
            left = await retention.give_space_back(self._db, pages=RECLAIM_PAGES)
            if not left or left == free:
                return
            free = left
            await _rest(started)


async def _rest(started: float) -> None:
    await asyncio.sleep((time.perf_counter() - started) * REST)
