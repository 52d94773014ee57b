"""Obtaining a succeeded task's result as a stream of bytes, in whichever form the upstream gave it.

Three forms (see the upstream's notes): a link to download (Wanxiang), a `data:` URI in the
task's answer (Veo), or nothing, in which case the upstream's download API hands the file over
as base64 inside JSON (Sora). Each is streamed; none is ever held whole in memory.

A capture runs in a worker thread of its own, from the download to the stored file, and this
module is synchronous for it: receiving, decoding, hashing and writing megabytes are work that
Python does in C with the GIL released, so they proceed on another core while the event loop
keeps polling and delivering, instead of taking turns with them chunk by chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from app.capture import decoding
from app.transport import USER_AGENT

#: Redirects followed from a result link (storage services redirect to a signed location).
MAX_REDIRECTS = 5
#: Media types taken for a video when a link's answer names no `video/` type.
BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
#: How much is read from the network at a time.
CHUNK_BYTES = 256 * 1024


class CaptureFailed(Exception):
    """A try at obtaining the result failed. `permanent`: trying again cannot help."""

    def __init__(self, code: str, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent


class Stopping(Exception):
    """The relay is stopping: the capture is abandoned, to be taken up again after the restart."""


@dataclass(frozen=True, slots=True)
class Result:
    content_type: str
    #: The size the upstream stated up front, if it did (`Content-Length`).
    stated_size: int | None
    chunks: Iterator[bytes]


@dataclass(frozen=True, slots=True)
class Where:
    """Where a result is: `inline` (a `data:` URI), else `link`, else the download API; a
    `link` that is not http(s) (Veo's `"expired"`) means there is none any more."""

    task_id: str
    link: str | None
    inline: str | None
    api_key: str | None


class ResultSource:
    """
    :param http: the captures' own HTTP client (thread-safe, pooled), used from worker threads.
    :param download_url: the upstream's download API, `{base}/v1/video/generations/download`.
    :param api_key: the relay's own upstream key, for watches that brought none.
    :param timeout: the longest one download may take, from its request to its last byte.
    :param max_bytes: a result stated to be larger is refused before it is read.
    """

    def __init__(
        self,
        *,
        http: httpx.Client,
        download_url: str,
        api_key: str | None,
        timeout: float,
        max_bytes: int,
    ) -> None:
        self._http = http
        self._timeout = timeout
        self._download_url = download_url
        self._api_key = api_key
        self._max_bytes = max_bytes
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Captures under way give up at their next chunk; connections are closed, so that none
        waits for a read to time out."""
        self._stopping.set()
        self._http.close()

    def upstream_key(self, api_key: str | None) -> str | None:
        """The key a download API request made for a watch with `api_key` is sent with."""
        return api_key or self._api_key

    @contextmanager
    def open(self, where: Where) -> Iterator[Result]:
        """The result, ready to be read."""
        if where.inline is not None:
            yield self._inline(where.inline)
        elif where.link is None:
            with self._download_api(where.task_id, self.upstream_key(where.api_key)) as result:
                yield result
        elif where.link.startswith(("https://", "http://")):
            with self._link(where.link) as result:
                yield result
        else:
            raise CaptureFailed(
                "result_expired",
                f"the upstream gave no result to download (its url was {where.link[:64]!r})",
                permanent=True,
            )

    @contextmanager
    def _link(self, url: str) -> Iterator[Result]:
        with (
            _transport_errors("the result link could not be reached"),
            self._http.stream("GET", url, follow_redirects=True) as response,
        ):
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
            if not _is_video(content_type):
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
                self._read(response.iter_bytes(CHUNK_BYTES)),
            )

    @contextmanager
    def _download_api(self, task_id: str, api_key: str | None) -> Iterator[Result]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        with (
            _transport_errors("the upstream's download API could not be reached"),
            self._http.stream(
                "GET", self._download_url, params={"id": task_id}, headers=headers
            ) as response,
        ):
            if response.status_code != 200:
                response.read()
                permanent = response.status_code in (401, 403, 404)
                raise CaptureFailed(
                    "result_expired" if response.status_code == 404 else "download_failed",
                    f"the upstream's download API answered HTTP {response.status_code}: "
                    f"{response.text[:200]}",
                    permanent=permanent,
                )
            decoder = decoding.DownloadAnswerDecoder()
            yield Result("video/mp4", None, _decoded(decoder, self._read(response.iter_raw())))

    def _inline(self, uri: str) -> Result:
        try:
            content_type = decoding.data_uri_media_type(uri)
        except decoding.DecodeError as exc:
            raise CaptureFailed("bad_result", str(exc), permanent=True) from None
        if not _is_video(content_type):
            raise CaptureFailed(
                "not_a_video",
                f"the inline result is {content_type!r}, not a video",
                permanent=True,
            )
        return Result(content_type, None, self._read(_bad_result(decoding.iter_data_uri(uri))))

    def _read(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks, until the relay stops or the download's time is up (a server may trickle:
        each read within its timeout, the whole without end); a connection lost meanwhile is
        worth another try."""
        deadline = time.monotonic() + self._timeout
        with _transport_errors("the download broke off"):
            for chunk in chunks:
                if self._stopping.is_set():
                    raise Stopping
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the download took too long")
                yield chunk

    def _refuse_if_too_large(self, size: int | None) -> None:
        if size is not None and size > self._max_bytes:
            raise CaptureFailed(
                "too_large",
                f"the result is {size} bytes; RELAY_CAPTURE_MAX_BYTES is {self._max_bytes}",
                permanent=True,
            )


def _decoded(decoder: decoding.DownloadAnswerDecoder, answer: Iterator[bytes]) -> Iterator[bytes]:
    """The file inside the download API's JSON, as it streams; checked against its stated size."""
    size = 0
    with _bad_answer("the download API's answer"):
        for chunk in answer:
            if out := decoder.feed(chunk):
                size += len(out)
                yield out
        if out := decoder.close():
            size += len(out)
            yield out
    if decoder.size is not None and decoder.size != size:
        raise CaptureFailed(
            "size_mismatch",
            f"the download API stated {decoder.size} bytes and gave {size}",
            permanent=False,
        )


def _bad_result(chunks: Iterator[bytes]) -> Iterator[bytes]:
    with _bad_answer("the inline result"):
        yield from chunks


@contextmanager
def _bad_answer(what: str) -> Iterator[None]:
    try:
        yield
    except decoding.DecodeError as exc:
        raise CaptureFailed("bad_result", f"{what}: {exc}", permanent=False) from None


@contextmanager
def _transport_errors(what: str) -> Iterator[None]:
    """A link out of reach, a connection lost mid-download, a timeout: worth another try."""
    try:
        yield
    except httpx.TimeoutException:
        message = "the download did not end in time"
        raise CaptureFailed("timeout", message, permanent=False) from None
    except httpx.TooManyRedirects:
        message = f"the result link redirected more than {MAX_REDIRECTS} times"
        raise CaptureFailed("download_failed", message, permanent=True) from None
    except httpx.HTTPError as exc:
        message = f"{what}: {type(exc).__name__}"
        raise CaptureFailed("download_failed", message, permanent=False) from None


def create_http(
    *, timeout: float, on_request: Callable[[httpx.Request], None] | None
) -> httpx.Client:
    """The captures' HTTP client: long timeouts (the download API reads the whole file before it
    answers), redirects limited, no proxy variables read, as the relay's other requests.

    :param on_request: sees each request before it is sent (the mounted simulator points them
        at the relay's own address).
    """
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
        event_hooks={"request": [on_request]} if on_request else None,
    )


def _media_type(header: str | None) -> str:
    return (header or "application/octet-stream").split(";", 1)[0].strip().lower()


def _is_video(content_type: str) -> bool:
    return content_type.startswith("video/") or content_type in BINARY_TYPES


def _stated_size(header: str | None) -> int | None:
    return int(header) if header is not None and header.isdigit() else None
