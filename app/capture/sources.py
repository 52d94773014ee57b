"""Obtaining a succeeded task's result as a stream of bytes, in whichever form the upstream gave it.

Three forms (see the upstream's notes): a link to download (Wanxiang), a `data:` URI in the
task's answer (Veo), or nothing, in which case the upstream's download API hands the file over
as base64 inside JSON (Sora). Each is streamed; none is ever held whole in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx

from app.capture import decoding
from app.transport import parsed_url, timeout_extension
from app.upstream import UpstreamClient, UpstreamError, UpstreamErrorKind
from app.work import DueCapture

#: Redirects followed from a result link (storage services redirect to a signed location).
MAX_REDIRECTS = 5
#: Media types taken for a video when a link's answer names no `video/` type.
BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


class CaptureFailed(Exception):
    """A try at obtaining the result failed. `permanent`: trying again cannot help."""

    def __init__(self, code: str, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Result:
    content_type: str
    #: The size the upstream stated up front, if it did (`Content-Length`).
    stated_size: int | None
    chunks: AsyncIterator[bytes]


class ResultSource:
    """
    :param transport: the captures' own connection pool, so downloads never hold the polls'.
    :param upstream: the upstream client whose download API fetches results given by no link.
    :param max_bytes: a result stated to be larger is refused before it is read.
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport,
        upstream: UpstreamClient,
        timeout: float,
        max_bytes: int,
    ) -> None:
        self._transport = transport
        self._upstream = upstream
        self._extensions = timeout_extension(timeout)
        self._max_bytes = max_bytes

    @asynccontextmanager
    async def open(self, capture: DueCapture, *, api_key: str | None) -> AsyncIterator[Result]:
        """The result of `capture`, ready to be read; `api_key` is the watch's upstream key."""
        if capture.inline_data is not None:
            yield _inline(capture.inline_data)
        elif capture.source_url is None:
            async with self._download_api(capture.task_id, api_key) as result:
                yield result
        elif capture.source_url.startswith(("https://", "http://")):
            async with self._link(capture.source_url) as result:
                yield result
        else:
            raise CaptureFailed(
                "result_expired",
                "the upstream gave no result to download "
                f"(its url was {capture.source_url[:64]!r})",
                permanent=True,
            )

    @asynccontextmanager
    async def _link(self, url: str) -> AsyncIterator[Result]:
        response = await self._follow(url)
        try:
            if response.status_code != 200:
                permanent = 400 <= response.status_code < 500 and response.status_code not in (
                    408,
                    429,
                )
                raise CaptureFailed(
                    "link_expired" if permanent else "download_failed",
                    f"the result link answered HTTP {response.status_code}",
                    permanent=permanent,
                )
            content_type = _media_type(response.headers.get("content-type"))
            if not (content_type.startswith("video/") or content_type in BINARY_TYPES):
                raise CaptureFailed(
                    "not_a_video",
                    f"the result link answered {content_type!r}, not a video",
                    permanent=True,
                )
            stated = _stated_size(response.headers.get("content-length"))
            self._refuse_if_too_large(stated)
            yield Result(
                "video/mp4" if content_type in BINARY_TYPES else content_type,
                stated,
                _broken_off(response.aiter_bytes()),
            )
        finally:
            await response.aclose()

    async def _follow(self, url: str) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            request = httpx.Request("GET", parsed_url(url), extensions=self._extensions)
            with _transport_errors("the result link could not be reached"):
                response = await self._transport.handle_async_request(request)
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307, 308) or location is None:
                return response
            await response.aclose()
            url = str(request.url.join(location))
        raise CaptureFailed(
            "download_failed", f"more than {MAX_REDIRECTS} redirects", permanent=True
        )

    @asynccontextmanager
    async def _download_api(self, task_id: str, api_key: str | None) -> AsyncIterator[Result]:
        try:
            async with self._upstream.download(task_id, api_key=api_key) as response:
                decoder = decoding.DownloadAnswerDecoder()
                yield Result(
                    "video/mp4", None, _decoded(decoder, _broken_off(response.aiter_raw()))
                )
        except UpstreamError as exc:
            kind = exc.kind
            permanent = kind in (UpstreamErrorKind.NOT_FOUND, UpstreamErrorKind.UNAUTHORIZED)
            raise CaptureFailed(
                "result_expired" if kind is UpstreamErrorKind.NOT_FOUND else "download_failed",
                f"the upstream's download API: {exc}",
                permanent=permanent,
            ) from None

    def _refuse_if_too_large(self, size: int | None) -> None:
        if size is not None and size > self._max_bytes:
            raise CaptureFailed(
                "too_large",
                f"the result is {size} bytes; RELAY_CAPTURE_MAX_BYTES is {self._max_bytes}",
                permanent=True,
            )


def _inline(uri: str) -> Result:
    try:
        content_type = decoding.data_uri_media_type(uri)
    except decoding.DecodeError as exc:
        raise CaptureFailed("bad_result", str(exc), permanent=True) from None
    if not (content_type.startswith("video/") or content_type in BINARY_TYPES):
        raise CaptureFailed(
            "not_a_video", f"the inline result is {content_type!r}, not a video", permanent=True
        )
    return Result(content_type, None, _off_the_loop(decoding.iter_data_uri(uri)))


async def _off_the_loop(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Decoding megabytes of base64 would hold the event loop; a worker thread does it."""
    done = object()
    while True:
        try:
            chunk = await asyncio.to_thread(next, chunks, done)
        except decoding.DecodeError as exc:
            raise CaptureFailed("bad_result", str(exc), permanent=True) from None
        if chunk is done:
            return
        assert isinstance(chunk, bytes)
        yield chunk


async def _decoded(
    decoder: decoding.DownloadAnswerDecoder, answer: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The file inside the download API's JSON, as it streams; checked against its stated size."""
    size = 0
    try:
        async for chunk in answer:
            if out := decoder.feed(chunk):
                size += len(out)
                yield out
        if out := decoder.close():
            size += len(out)
            yield out
    except decoding.DecodeError as exc:
        message = f"the download API's answer: {exc}"
        raise CaptureFailed("bad_result", message, permanent=False) from None
    if decoder.success is False:
        raise CaptureFailed("download_failed", "the download API said it failed", permanent=False)
    if decoder.size is not None and decoder.size != size:
        raise CaptureFailed(
            "size_mismatch",
            f"the download API stated {decoder.size} bytes and gave {size}",
            permanent=False,
        )


async def _broken_off(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    with _transport_errors("the download broke off"):
        async for chunk in chunks:
            yield chunk


@contextmanager
def _transport_errors(what: str) -> Iterator[None]:
    """A link out of reach, a connection lost mid-download, a timeout: worth another try."""
    try:
        yield
    except httpx.TimeoutException:
        raise CaptureFailed(
            "timeout", "the download did not end in time", permanent=False
        ) from None
    except httpx.TransportError as exc:
        raise CaptureFailed(
            "download_failed", f"{what}: {type(exc).__name__}", permanent=False
        ) from None


def _media_type(header: str | None) -> str:
    return (header or "application/octet-stream").split(";", 1)[0].strip().lower()


def _stated_size(header: str | None) -> int | None:
    return int(header) if header is not None and header.isdigit() else None
