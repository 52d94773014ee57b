"""Deleting captured files once their time to live is over; their watches keep the record."""

from __future__ import annotations

import logging

from app.capture.storage import FileStorage
from app.metrics import Metrics
from app.store import captures
from app.store.database import Database

log = logging.getLogger(__name__)

#: Files deleted per batch: one query, then the deletions, then one update.
BATCH = 100


class FileCleanup:
    """The file is deleted before the capture is marked expired, so a crash in between leaves
    a capture that is deleted again (harmlessly) rather than a file nobody will delete."""

    def __init__(
        self, *, db: Database, storage: FileStorage, metrics: Metrics, stale_parts_after: float
    ) -> None:
        """:param stale_parts_after: seconds after which a part of a local write is known to
        be left over from a capture that was cut short, since no capture's lease lasts as long."""
        self._db = db
        self._storage = storage
        self._metrics = metrics
        self._stale_parts_after = stale_parts_after

    async def run(self) -> None:
        if removed := self._storage.remove_stale_parts(self._stale_parts_after):
            log.info("deleted %d parts of captures cut short", removed)
        while expired := await captures.expired_files(self._db, limit=BATCH):
            for _, key in expired:
                await self._storage.delete(key)
            await captures.mark_expired(self._db, ids=[watch_id for watch_id, _ in expired])
            self._metrics.files_deleted.inc(len(expired))
            log.info("deleted %d captured files past their time to live", len(expired))
            if len(expired) < BATCH:
                return
