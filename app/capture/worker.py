"""Captures' bytes moved in a process of their own, beside the relay's (`app.workers`).

The relay's event loop runs every poll and delivery, and a capture costs it milliseconds per
result: each chunk of a download passes through the loop and through worker threads that must
win the GIL from it. Under load the two compete for one interpreter, and captures queue
(docs/capture-benchmark.md). In the capture process the bytes (download, decoding, hashing,
storing) move on another core, while the relay keeps everything else: the database, leases,
retries and events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app import logs, workers
from app.capture.saving import WORKER_READ_BYTES, ResultSaver, Saved
from app.capture.sources import CaptureFailed
from app.capture.storage import FileStorage
from app.settings import Settings
from app.work import DueCapture

log = logging.getLogger(__name__)

#: A capture's answer from the worker: what was stored, or why this try failed
#: (`CaptureFailed`'s code, message and whether it is permanent).
_Outcome = Saved | tuple[str, str, bool]


class WorkerExited(CaptureFailed):
    def __init__(self, exited: workers.WorkerExited) -> None:
        super().__init__(
            "worker_exited",
            f"the capture process exited (code {exited.returncode}) during the download",
            permanent=False,
        )


class CaptureProcess:
    """Saves in a worker process (`Saver`); any number of captures can be in the worker at
    once, the relay's slots bound them."""

    def __init__(self, settings: Settings) -> None:
        self._worker = workers.WorkerProcess(__name__, settings, name="capture process")

    async def start(self) -> None:
        await self._worker.start()

    async def save(self, capture: DueCapture, *, api_key: str | None) -> Saved:
        try:
            outcome: _Outcome = await self._worker.ask((capture, api_key))
        except workers.WorkerExited as exc:
            raise WorkerExited(exc) from None
        if isinstance(outcome, Saved):
            return outcome
        code, text, permanent = outcome
        raise CaptureFailed(code, text, permanent=permanent)

    async def aclose(self) -> None:
        await self._worker.aclose()


@asynccontextmanager
async def _saving(settings: Settings) -> AsyncIterator[workers.Handler]:
    logs.configure(settings)
    saver = ResultSaver.from_settings(
        settings, read_bytes=WORKER_READ_BYTES, storage=FileStorage.from_settings(settings)
    )

    async def save(request: tuple[DueCapture, str | None]) -> _Outcome:
        capture, api_key = request
        try:
            return await saver.save(capture, api_key=api_key)
        except CaptureFailed as exc:
            return (exc.code, exc.message, exc.permanent)
        except Exception as exc:
            log.exception("capture failed unexpectedly", extra={"watch_id": capture.id})
            return ("internal_error", f"internal error: {type(exc).__name__}", False)

    try:
        yield save
    finally:
        await saver.aclose()


if __name__ == "__main__":
    workers.serve(_saving)
