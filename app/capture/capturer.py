"""Capturing the results of succeeded tasks: each obtained once, stored, linked from its event."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from app.capture.links import FileLinks
from app.capture.saving import Saver
from app.capture.sources import CaptureFailed
from app.capture.storage import FileStorage
from app.delivery import webhooks
from app.delivery.bodies import CapturedVideo
from app.delivery.webhooks import CaptureError, CaptureReport
from app.encryption import KeyBox, UndecryptableError, watch_key
from app.metrics import Metrics
from app.renewal import LeaseRenewal
from app.slots import Slots
from app.store import captures
from app.store.batching import Batcher
from app.store.database import Database
from app.work import CaptureOutcome, DueCapture, StoredFile

log = logging.getLogger(__name__)

#: Retries of a capture wait twice as long each time, from this many seconds up to `MAX_BACKOFF`.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 120.0


class Capturer:
    """Keeps up to `concurrency` captures in flight, with slots of their own, so that long
    downloads never take the place of polls or deliveries.

    A try that fails is tried again with backoff until the capture's deadline; then, or at once
    when trying again cannot help (a dead link, a file too large), the final event goes out
    without the file and says why (`data.capture_error`).

    :param saver: what obtains and stores the bytes, in this process or in a worker process.
    :param storage: where the saver stores, for deleting a file that came too late to count.
    :param lease: how long a claimed capture stays ours; `renew_leases` extends it while the
        download runs, so it can be short however long downloads take.
    :param pace_downloads: waits for the turn of a watch's upstream key (given the watch's own
        key, if any) before its download API is called: that API shares the polls' budget.
    :param on_events: called when final events were written, so delivery starts at once.
    """

    def __init__(
        self,
        *,
        db: Database,
        saver: Saver,
        storage: FileStorage,
        links: FileLinks,
        owner: str,
        lease: float,
        concurrency: int,
        file_ttl: float,
        pace_downloads: Callable[[str | None], Awaitable[object]] | None,
        key_box: KeyBox | None,
        metrics: Metrics,
        on_events: Callable[[], None],
        on_slot_free: Callable[[], None],
        on_due_in: Callable[[float], None],
    ) -> None:
        self._db = db
        self._saver = saver
        self._storage = storage
        self._links = links
        self._owner = owner
        self._lease = lease
        self._pace_downloads = pace_downloads
        self._file_ttl = timedelta(seconds=file_ttl)
        self._key_box = key_box
        self._metrics = metrics
        self._on_events = on_events
        self._on_due_in = on_due_in
        self._slots = Slots(concurrency, on_refill=on_slot_free)
        self._leases = LeaseRenewal(
            lambda ids: captures.renew_leases(db, owner=owner, ids=ids, lease=lease)
        )
        self._recorder: Batcher[CaptureOutcome, bool] = Batcher(
            lambda outcomes: captures.record_captures(db, owner=owner, outcomes=outcomes)
        )

    async def run(self) -> None:
        """Fill the free capture slots with due captures."""
        while count := self._slots.to_fill():
            due = await captures.claim_due_captures(
                self._db, owner=self._owner, lease=self._lease, limit=count
            )
            for capture in due:
                self._slots.start(self._capture_and_record(capture))
            self._slots.more_due(len(due) == count)
            if len(due) < count:
                return

    async def renew_leases(self) -> None:
        """Keep the captures whose downloads are running ours, however long they take."""
        await self._leases.renew()

    async def drain(self, grace: float) -> None:
        """Let captures in flight finish (graceful shutdown); the rest are released."""
        await self._slots.drain(grace)

    async def _capture_and_record(self, capture: DueCapture) -> None:
        with self._leases.holding(capture.id):
            await self._capture_and_record_held(capture)

    async def _capture_and_record_held(self, capture: DueCapture) -> None:
        try:
            outcome = await self._capture(capture)
        finally:
            self._slots.give_back()
        self._metrics.captures.labels(outcome=_outcome_label(outcome)).inc()
        if outcome.error is not None:
            self._metrics.capture_errors.labels(code=outcome.error.code).inc()
        try:
            counted = await self._recorder.submit(outcome)
        except Exception:
            # The lease will lapse and the capture be tried again: nothing is lost.
            log.exception("could not record a capture", extra=_ids(capture))
            return
        if counted:
            _log_capture(outcome)
        if not counted and outcome.stored is not None:
            # Cancelled meanwhile, or taken over by another replica: this copy is nobody's.
            await self._storage.delete(outcome.stored.key)
        if outcome.final and counted:
            self._on_events()
        elif outcome.retry_at is not None:
            self._on_due_in((outcome.retry_at - datetime.now(UTC)).total_seconds())

    async def _capture(self, capture: DueCapture) -> CaptureOutcome:
        started = time.perf_counter()
        try:
            stored = await self._obtain(capture)
        except CaptureFailed as exc:
            return self._failed(capture, CaptureError(exc.code, exc.message), exc.permanent)
        except UndecryptableError as exc:
            return self._failed(capture, CaptureError("upstream_key", str(exc)), True)
        except Exception as exc:
            log.exception("capture failed unexpectedly", extra=_ids(capture))
            error = CaptureError("internal_error", f"internal error: {type(exc).__name__}")
            return self._failed(capture, error, False)
        self._metrics.capture_seconds.observe(time.perf_counter() - started)
        self._metrics.capture_bytes.inc(stored.size_bytes)
        video: CapturedVideo = {
            "url": self._links.url(capture.id, stored.expires_at),
            "source_url": capture.source_url if capture.inline_data is None else None,
            "content_type": stored.content_type,
            "size_bytes": stored.size_bytes,
            "sha256": stored.sha256,
            "expires_at": _iso(stored.expires_at),
        }
        return CaptureOutcome(capture, stored, None, None, CaptureReport(video, None))

    async def _obtain(self, capture: DueCapture) -> StoredFile:
        api_key = watch_key(self._key_box, capture.upstream_api_key_encrypted)
        if capture.uses_download_api and self._pace_downloads is not None:
            await self._pace_downloads(api_key)
        saved = await self._saver.save(capture, api_key=api_key)
        now = datetime.now(UTC)
        return StoredFile(
            key=saved.key,
            content_type=saved.content_type,
            size_bytes=saved.size_bytes,
            sha256=saved.sha256,
            stored_at=now,
            expires_at=now + self._file_ttl,
        )

    def _failed(self, capture: DueCapture, error: CaptureError, permanent: bool) -> CaptureOutcome:
        """Due again with backoff, unless trying again cannot help or the deadline would pass."""
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** min(capture.attempts, 30))
        retry_at = datetime.now(UTC) + timedelta(seconds=delay * random.uniform(1.0, 1.25))
        if permanent or retry_at >= capture.deadline_at:
            return CaptureOutcome(capture, None, error, None, CaptureReport(None, error))
        return CaptureOutcome(capture, None, error, retry_at, None)


def _ids(capture: DueCapture) -> dict[str, str]:
    return {"watch_id": capture.id, "task_id": capture.task_id, "client_id": capture.client_id}


def _log_capture(outcome: CaptureOutcome) -> None:
    """Once recorded: what became of the try, and the webhook that a capture's end makes."""
    ids = _ids(outcome.capture)
    if outcome.stored is not None:
        stored = outcome.stored
        log.info("capture stored", extra={**ids, "size_bytes": stored.size_bytes})
    elif outcome.error is not None:
        failure = {**ids, "code": outcome.error.code, "error": outcome.error.message}
        if outcome.retry_at is not None:
            retry = outcome.retry_at.isoformat().replace("+00:00", "Z")
            log.info("capture try failed", extra={**failure, "retry_at": retry})
        else:
            log.warning("capture failed", extra=failure)
    if outcome.final:
        event_id = webhooks.captured_event_id(outcome.capture.id)
        log.info(
            "event created",
            extra={**ids, "event_id": event_id, "event_type": webhooks.SUCCEEDED},
        )


def _outcome_label(outcome: CaptureOutcome) -> str:
    if outcome.stored is not None:
        return "stored"
    return "retry" if outcome.retry_at is not None else "failed"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
