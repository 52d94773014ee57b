"""One try at a capture's bytes: the result obtained from wherever the upstream put it, checked,
hashed and stored. No database and no scheduling here, so that it can run in a process of its
own (`app.capture.worker`) as well as in the relay's."""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from typing import Protocol

import httpx

from app import transport
from app.capture.sources import CaptureFailed, ResultSource
from app.capture.storage import FileStorage, TooLarge
from app.settings import Settings
from app.upstream import UpstreamClient
from app.work import DueCapture

#: Results are downloaded a piece of this many bytes at a time in the relay's own process: each
#: piece costs a turn of the event loop and a hop to a worker thread to hash and write it, and
#: each hop can wait milliseconds for the GIL behind polls, so a typical result (a few MB) comes
#: in one or two pieces.
IN_PROCESS_READ_BYTES = 4 * 1024 * 1024
#: In the capture process, whose event loop does nothing else, hops are cheap: smaller pieces
#: hold less memory for each of the many captures in flight there.
WORKER_READ_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Saved:
    """A result stored whole under `key`."""

    key: str
    content_type: str
    size_bytes: int
    sha256: str


class Saver(Protocol):
    async def aclose(self) -> None: ...

    async def save(self, capture: DueCapture, *, api_key: str | None) -> Saved:
        """Obtain and store the result of `capture`, fetched with the watch's upstream
        `api_key` where one is needed.

        :raises CaptureFailed: this try failed; whether another can help, it says.
        """
        ...


class ResultSaver:
    """Saves in the calling process.

    :param transport: the captures' own connection pool, closed with the saver.
    :param timeout: the longest one try may take, download and storing included: a link that
        trickles cannot hold a capture (and its renewed lease) forever.
    :param max_bytes: `RELAY_CAPTURE_MAX_BYTES`; a larger result is abandoned as it streams.
    """

    def __init__(
        self,
        *,
        source: ResultSource,
        storage: FileStorage,
        transport: httpx.AsyncBaseTransport,
        timeout: float,
        max_bytes: int,
    ) -> None:
        self._source = source
        self._storage = storage
        self._transport = transport
        self._timeout = timeout
        self._max_bytes = max_bytes

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        read_bytes: int,
        storage: FileStorage,
        download_api: UpstreamClient | None = None,
    ) -> ResultSaver:
        """:param read_bytes: the size of the pieces a download is read in.
        :param storage: where results are stored (the relay's own, when it saves in-process).
        :param download_api: the client of the upstream's download API (default: the
            settings' upstream, through the captures' own pool)."""
        pool = transport.create_transport(
            max_connections=settings.capture_slots, read_size=read_bytes
        )
        if download_api is None:
            download_api = UpstreamClient.from_settings(
                pool, settings, timeout=settings.capture_request_timeout
            )
        source = ResultSource(
            transport=pool,
            upstream=download_api,
            timeout=settings.capture_request_timeout,
            max_bytes=settings.capture_max_bytes,
        )
        return cls(
            source=source,
            storage=storage,
            transport=pool,
            timeout=settings.capture_request_timeout,
            max_bytes=settings.capture_max_bytes,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def save(self, capture: DueCapture, *, api_key: str | None) -> Saved:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._save(capture, api_key)
        except TimeoutError:
            message = f"the download took longer than {self._timeout:g} s"
            raise CaptureFailed("timeout", message, permanent=False) from None

    async def _save(self, capture: DueCapture, api_key: str | None) -> Saved:
        async with self._source.open(capture, api_key=api_key) as result:
            key = f"videos/{capture.id}{_extension(result.content_type)}"
            try:
                written = await self._storage.write(
                    key, result.chunks, content_type=result.content_type, max_bytes=self._max_bytes
                )
            except TooLarge as exc:
                raise CaptureFailed("too_large", str(exc), permanent=True) from None
        if result.stated_size is not None and written.size_bytes != result.stated_size:
            await self._storage.delete(key)
            raise CaptureFailed(
                "size_mismatch",
                f"the upstream stated {result.stated_size} bytes and gave {written.size_bytes}",
                permanent=False,
            )
        return Saved(key, result.content_type, written.size_bytes, written.sha256)


def _extension(content_type: str) -> str:
    return mimetypes.guess_extension(content_type) or ".bin"
