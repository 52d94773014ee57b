"""The one place that decides what carries the relay's outgoing HTTP.

Everything else speaks httpx: it builds an `httpx.Request`, hands it to an httpx transport, and
reads an `httpx.Response` or catches httpx's exceptions. Underneath, requests travel over
aiohttp. At the concurrency the poller runs, httpx's own connection pool spends most of the
relay's CPU on bookkeeping that grows with the queue, and the generic `httpx-aiohttp` adapter
converts headers and URLs at a cost the relay pays thousands of times a second (`python -m bench`
prints the client loops side by side). Swapping the transport again is a change to this module
alone.

The relay's own requests go to the transport without an `httpx.AsyncClient` in between: a poll
or a webhook needs none of what a client adds (cookies, redirects, auth flows, merged defaults),
and at two thousand requests a second that layer cost a third of the relay's CPU. Redirects are
therefore never followed (a 3xx from a receiver is a failed delivery) and no proxy variables are
read: the relay calls receivers and the upstream directly.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import yarl

#: How the relay names itself to the upstream and to receivers.
USER_AGENT = "video-webhook-relay"


def create_transport(*, max_connections: int) -> AiohttpTransport:
    """A long-lived connection pool, one per destination kind (upstream, receivers)."""
    return AiohttpTransport(max_connections=max_connections)


def timeout_extension(seconds: float) -> dict[str, dict[str, float]]:
    """The `extensions` of an `httpx.Request`, where a client would put its timeout."""
    return {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), seconds)}


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends an `httpx.Request` exactly as httpx built it, over an aiohttp connection pool.

    aiohttp adds none of its own headers, keeps no cookies and does not decompress: headers,
    cookies and content decoding stay httpx's business, so a request and its response behave the
    same as over httpx's own transport. aiohttp's errors are raised as the httpx errors that name
    the same failure. Request bodies are sent from memory; the relay only sends small JSON.
    """

    def __init__(self, *, max_connections: int) -> None:
        self._max_connections = max_connections
        self._ssl = httpx.create_ssl_context(trust_env=False)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session is made on first use, inside the event loop that will run it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with _httpx_errors(request):
            response = await session.request(
                request.method,
                # httpx has already percent-encoded the URL; aiohttp must not do it again.
                yarl.URL(str(request.url), encoded=True),
                headers=[
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in request.headers.raw
                ],
                data=body or None,
                allow_redirects=False,
                timeout=_client_timeout(
                    timeout.get("connect"), timeout.get("read"), timeout.get("pool")
                ),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_ResponseBody(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", errors="replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ResponseBody(httpx.AsyncByteStream):
    """Streams the body as it arrives; closing it early closes the connection instead of
    reading a body nobody wants."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


@functools.lru_cache(maxsize=32)
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """httpx's connect and read timeouts are per socket operation, as aiohttp's `sock_*` ones;
    waiting for a free connection is aiohttp's `connect`."""
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


_Causes = tuple[type[BaseException], ...]

#: aiohttp's errors and the httpx errors that name the same failure, the narrower first.
_ERRORS: tuple[tuple[_Causes, type[httpx.TransportError]], ...] = (
    ((aiohttp.ConnectionTimeoutError,), httpx.ConnectTimeout),
    ((TimeoutError,), httpx.ReadTimeout),  # aiohttp.ServerTimeoutError is one
    ((aiohttp.ClientConnectorError,), httpx.ConnectError),
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), httpx.UnsupportedProtocol),
    ((aiohttp.ClientPayloadError, aiohttp.ClientOSError), httpx.ReadError),
    ((aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError), httpx.RemoteProtocolError),
    ((aiohttp.ClientError,), httpx.TransportError),
)


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        for cause, error in _ERRORS:
            if isinstance(exc, cause):
                raise error(str(exc) or type(exc).__name__, request=request) from exc
        raise
