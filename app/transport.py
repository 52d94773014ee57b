"""The one place that decides what carries the relay's outgoing HTTP.

Everything else speaks httpx: it builds an `httpx.Request`, hands it to an httpx transport, and
reads an `httpx.Response` or catches httpx's exceptions. Underneath, requests travel over
reqwest, Rust's HTTP client, through the `pyreqwest` package: connections, HTTP parsing and TLS
run on a thread of their own, outside the event loop. That loop also serves the API and runs
every poll and delivery, and it is what limits the relay (the benchmark's CPU notes show it
using a whole core while the machine has more to spare), so each request should cost it as
little as possible (docs/performance.md compares reqwest with what was tried before). Swapping
the transport is a change to this module alone.

The relay's own requests go to the transport without an `httpx.AsyncClient` in between: a poll
or a webhook needs none of what a client adds (cookies, redirects, auth flows, merged defaults),
and that layer's cost would be paid on every one of thousands of requests a second. Redirects are
therefore never followed (a 3xx from a receiver is a failed delivery) and no proxy variables are
read: the relay calls receivers and the upstream directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

import httpx
from pyreqwest import exceptions as reqwest
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

#: How the relay names itself to the upstream and to receivers.
USER_AGENT = "video-webhook-relay"
#: How much of a body reqwest reads ahead before handing over the response. Whatever the relay
#: reads (a task's JSON, the start of a receiver's answer) then comes with the headers, in one
#: hop from reqwest's thread to the event loop, while a large or endless body is not waited for.
READ_AHEAD_BYTES = 16 * 1024


#: URLs up to this long are kept parsed (Veo's task ids make URLs of about 450 characters), so
#: that the cache stays within tens of megabytes whatever ids and callback URLs arrive.
KEPT_URL_LENGTH = 1024


def parsed_url(url: str) -> httpx.URL:
    """`url` parsed once, for the URLs the relay sends to again and again: a task's, polled every
    few seconds for minutes, and a receiver's, shared by many watches. Parsing is most of what
    building an `httpx.Request` costs, and a parsed URL is immutable."""
    return _parsed(url) if len(url) <= KEPT_URL_LENGTH else httpx.URL(url)


#: More URLs than one process polls watches, 20,000 at 5 s with an HTTP process: watches are
#: polled in turn, so once they outnumber the cache every lookup misses (about 20 µs each). A
#: parsed URL takes 0.55 KB (1.3 KB with a Veo id), 18-42 MB when full.
KEPT_URLS = 32 * 1024


@lru_cache(maxsize=KEPT_URLS)
def _parsed(url: str) -> httpx.URL:
    return httpx.URL(url)


def create_transport(*, max_connections: int, read_size: int | None = None) -> ReqwestTransport:
    """A long-lived connection pool, one per destination kind (upstream, receivers, captures).

    :param read_size: bodies are handed over in pieces of this many bytes rather than as they
        arrive from the network, for large downloads: each piece costs the event loop a turn.
    """
    return ReqwestTransport(max_connections=max_connections, read_size=read_size)


#: The `httpx.Request` extension `timeout_extension(…, read_whole=True)` sets.
READ_WHOLE = "video_webhook_relay.read_whole"


def timeout_extension(seconds: float, *, read_whole: bool = False) -> dict[str, Any]:
    """The `extensions` of an `httpx.Request`, where a client would put its timeout.

    :param read_whole: the caller reads the whole answer, a small one (a task's JSON): reqwest
        reads it all before handing over the response, which then holds its body. The event loop
        waits on reqwest's thread once instead of for each step of a stream (headers, body, end),
        and runs no stream machinery: a tenth of what a poll's request costs the relay's process
        (docs/performance.md).
    """
    extensions: dict[str, Any] = {
        "timeout": dict.fromkeys(("connect", "read", "write", "pool"), seconds)
    }
    if read_whole:
        extensions[READ_WHOLE] = True
    return extensions


@dataclass(frozen=True, slots=True)
class Pin:
    """Connect to `address` whenever `host` is asked for on `port`, instead of resolving it.

    That makes the address a connection goes to the one that was checked, not whatever the
    name resolves to by the time the connection is made. TLS still names `host` (SNI, and the
    certificate it must match).
    """

    host: str
    address: str
    port: int


class ReqwestTransport(httpx.AsyncBaseTransport):
    """Sends an `httpx.Request` as httpx built it, over a reqwest connection pool.

    reqwest keeps no cookies, follows no redirect, reads no proxy variables and does not
    decompress: cookies and content decoding stay httpx's business, so a response behaves the
    same as over httpx's own transport. Of its own it adds only what a request lacks: `Accept:
    */*` (which `httpx.AsyncClient` adds too) and the relay's `User-Agent`.

    reqwest bounds a request as a whole rather than each step of it, so the longest of the
    request's httpx timeouts bounds the whole exchange, and running out of time is raised as
    `httpx.ReadTimeout` (reqwest does not say which step was under way). Its other errors are
    raised as the httpx errors that name the same failure. Request bodies are sent from memory;
    the relay only sends small JSON.

    A request whose connection the peer closes before answering is sent once more, on a new
    connection. That is how a server's idle timeout meets a pooled connection reused at that very
    moment (uvicorn and Node.js close idle connections after 5 s), and a webhook held back with
    `Retry-After` is sent again just as long after its last answer. Sending again is safe for
    what the relay sends: polls are GETs, and a webhook may arrive twice with the same
    `webhook-id`.
    """

    def __init__(
        self, *, max_connections: int, pin: Pin | None = None, read_size: int | None = None
    ) -> None:
        self._max_connections = max_connections
        self._pin = pin
        self._read_size = read_size
        self._client: Client | None = None

    def _open(self) -> Client:
        """The client is made on first use (unless `open` made it before)."""
        if self._client is None:
            builder = ClientBuilder()
            if self._pin is not None:
                builder = builder.resolve(self._pin.host, self._pin.address, self._pin.port)
            self._client = (
                builder.max_connections(self._max_connections)
                .user_agent(USER_AGENT)
                .follow_redirects(False)
                .no_proxy()
                .default_cookie_store(False)
                .gzip(False)
                .brotli(False)
                .deflate(False)
                .zstd(False)
                .http1_only()
                .build()
            )
        return self._client

    async def open(self) -> None:
        """Make the client now, in a worker thread: building one loads the trusted certificate
        authorities, milliseconds the event loop would otherwise spend on each new transport."""
        if self._client is None:
            await asyncio.to_thread(self._open)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"the URL's scheme must be http or https, not {request.url.scheme!r}",
                request=request,
            )
        body = await _content(request)
        read_whole = bool(request.extensions.get(READ_WHOLE))
        try:
            exchange, response = await self._exchange(request, body, read_whole)
        except reqwest.PyreqwestError as exc:
            if not _hung_up(exc):
                raise _as_httpx(exc, request) from exc
            # Most likely a pooled connection the peer had just closed for being idle: once
            # more, on a fresh one.
            with _httpx_errors(request):
                exchange, response = await self._exchange(request, body, read_whole)
        headers = list(response.headers.items())
        extensions = {"http_version": response.version.encode("ascii")}
        if exchange is None:
            with _httpx_errors(request):
                content = bytes(await response.bytes())  # read already: no wait
            whole = httpx.Response(
                response.status,
                headers=headers,
                stream=httpx.ByteStream(content),
                request=request,
                extensions=extensions,
            )
            whole.read()  # from memory: `content` is there at once, the stream closed
            return whole
        return httpx.Response(
            response.status,
            headers=headers,
            stream=_ResponseBody(exchange, response, request, self._read_size),
            request=request,
            extensions=extensions,
        )

    async def _exchange(
        self, request: httpx.Request, body: bytes, read_whole: bool
    ) -> tuple[StreamRequest | None, Response]:
        """Sends the request; returns once its headers (and the start of its body, or all of it
        when `read_whole`) are in, with the exchange a streamed body is read through."""
        builder = self._open().request(request.method, str(request.url))
        builder = builder.headers(
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.headers.raw
            ]
        )
        if body:
            builder = builder.body_bytes(body)
        limit = _longest(request.extensions.get("timeout", {}))
        if limit is not None:
            builder = builder.timeout(timedelta(seconds=limit))
        if read_whole:
            return None, await builder.build().send()
        exchange = builder.streamed_read_buffer_limit(READ_AHEAD_BYTES).build_streamed()
        return exchange, await exchange.__aenter__()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class _ResponseBody(httpx.AsyncByteStream):
    """Streams the body as it arrives; closing it early drops the connection instead of
    reading a body nobody wants."""

    def __init__(
        self,
        exchange: StreamRequest,
        response: Response,
        request: httpx.Request,
        read_size: int | None,
    ) -> None:
        self._exchange = exchange
        self._reader = response.body_reader
        self._request = request
        self._read_size = read_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            with _httpx_errors(self._request):
                if self._read_size is None:
                    chunk = await self._reader.read_chunk()
                else:
                    chunk = await self._reader.read(self._read_size)
            if chunk is None:
                return
            yield bytes(chunk)

    async def aclose(self) -> None:
        await self._exchange.__aexit__(None, None, None)


async def _content(request: httpx.Request) -> bytes:
    """The request's body: what httpx built from bytes (every request of the relay's) it has read
    already, and an await of its stream would cost a turn of machinery for nothing."""
    try:
        return request.content
    except httpx.RequestNotRead:
        return await request.aread()


def _longest(timeouts: dict[str, Any]) -> float | None:
    """The longest of httpx's four timeouts; None when none is set."""
    set_ = [float(value) for value in timeouts.values() if value is not None]
    return max(set_) if set_ else None


_Causes = tuple[type[BaseException], ...]

#: reqwest's errors and the httpx errors that name the same failure, the narrower first. (A
#: `ConnectError` in which the peer hung up is a `RemoteProtocolError`: see `_hung_up`.)
_ERRORS: tuple[tuple[_Causes, type[httpx.TransportError]], ...] = (
    ((reqwest.PoolTimeoutError,), httpx.PoolTimeout),
    ((reqwest.RequestTimeoutError,), httpx.ReadTimeout),
    ((reqwest.BodyDecodeError, reqwest.ReadError), httpx.ReadError),
    ((reqwest.WriteError,), httpx.WriteError),
    ((reqwest.DecodeError,), httpx.RemoteProtocolError),
    ((reqwest.BuilderError,), httpx.LocalProtocolError),
    ((reqwest.ConnectError,), httpx.ConnectError),
    ((reqwest.PyreqwestError,), httpx.TransportError),
)


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except reqwest.PyreqwestError as exc:
        raise _as_httpx(exc, request) from exc


def _as_httpx(exc: reqwest.PyreqwestError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that names the same failure."""
    if _hung_up(exc):
        return httpx.RemoteProtocolError(_message(exc), request=request)
    error = next(error for causes, error in _ERRORS if isinstance(exc, causes))
    return error(_message(exc), request=request)


def _causes(exc: reqwest.PyreqwestError) -> list[str]:
    details = getattr(exc, "details", None) or {}
    return [str(cause.get("message", "")) for cause in details.get("causes") or []]


def _hung_up(exc: reqwest.PyreqwestError) -> bool:
    """Whether the peer closed the connection before answering. reqwest reports that as a
    `ConnectError` too, and names the step that failed only in the chain of causes."""
    return isinstance(exc, reqwest.ConnectError) and not any(
        "(Connect)" in cause or "connect error" in cause for cause in _causes(exc)
    )


def _message(exc: reqwest.PyreqwestError) -> str:
    """reqwest's message and its causes, most specific last, without the first (which only
    repeats the URL): "connection error: client error (Connect): tcp connect error: Connection
    refused (os error 111)"."""
    return ": ".join([exc.message, *_causes(exc)[1:]])
