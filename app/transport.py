"""The one place that decides what carries the relay's outgoing HTTP.

Everything else talks to `httpx.AsyncClient`. Underneath, requests travel over aiohttp
(`httpx-aiohttp`): at the concurrency the poller runs, httpx's own connection pool spends most of
the relay's CPU on bookkeeping that grows with the queue (`python -m bench` prints both client
loops side by side). Swapping the transport again is a change to this module alone.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def create_client(
    *, timeout: float, max_connections: int, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A long-lived client with its own pool, one per destination kind (upstream, receivers).

    Redirects are never followed: a 3xx from a receiver is a failed delivery, and the upstream
    has no reason to redirect an API call. Proxy variables are not read: the relay calls
    receivers and the upstream directly.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        transport=_Transport(limits=limits, trust_env=False),
        timeout=httpx.Timeout(timeout),
        headers=headers,
        follow_redirects=False,
        trust_env=False,
    )


class _Transport(AiohttpTransport):
    """Corrects how connection failures surface.

    httpx-aiohttp 0.2 maps every `aiohttp.ClientConnectionError` to `httpx.ConnectTimeout`, so a
    refused connection or a dropped one would read as a timeout. The relay tells them apart (in
    the attempt log, in the poll errors), so they are raised as httpx names them.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
                cause, aiohttp.ServerTimeoutError
            ):
                raise httpx.RemoteProtocolError(str(cause), request=request) from cause
            raise
