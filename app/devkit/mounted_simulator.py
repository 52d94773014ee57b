"""The simulator served inside the relay (``RELAY_SIMULATOR=true``), and the relay polling it.

The relay polls its own simulator over real HTTP, exactly as it polls a remote upstream, so a
first run exercises the production path. The one difficulty is the address: uvicorn binds its
port only after the app has started, and the app is never told which port it got. So the address
is learned from the first request the relay serves (every watch is registered by one), and
upstream requests are pointed there just before they are sent.
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

MOUNT_PATH = "/simulator"
API_KEY = "sk-simulator"
"""The key the relay polls its own simulator with when NEBULA_API_KEY is not set; the trigger
command submits with the same one, since the simulator shows a task only to its submitter."""

BASE_URL = "http://relay.invalid" + MOUNT_PATH
"""What the upstream client is configured with; only scheme, host and port are replaced."""


class ServedAddress:
    """Where this relay is reached: scheme, host and port of the first request it served."""

    def __init__(self) -> None:
        self.origin: tuple[str, str, int] | None = None

    def point_here(self, request: httpx.Request) -> None:
        """Sends an upstream request to this very relay."""
        if self.origin is None:
            raise httpx.ConnectError(
                "the relay's own address is learned from its first request; none has come yet",
                request=request,
            )
        scheme, host, port = self.origin
        request.url = request.url.copy_with(scheme=scheme, host=host, port=port)
        # The simulator builds its result links from Host, so they must name the relay too.
        request.headers["Host"] = request.url.netloc.decode("ascii")


class ToServedAddress(httpx.AsyncBaseTransport):
    """A transport that sends every request to this relay, over the transport it wraps."""

    def __init__(self, transport: httpx.AsyncBaseTransport, address: ServedAddress) -> None:
        self._transport = transport
        self._address = address

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._address.point_here(request)
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()


class LearnServedAddress:
    """ASGI middleware recording the local address of the first HTTP connection it sees.

    ``scope["server"]`` is the socket's own address (the concrete IP even when bound to
    0.0.0.0), so connecting to it reaches this process whatever the client called it.
    """

    def __init__(self, app: ASGIApp, address: ServedAddress) -> None:
        self.app = app
        self.address = address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.address.origin is None:
            server = scope.get("server")
            if server is not None and isinstance(server[1], int):  # not a unix socket
                self.address.origin = (scope["scheme"], server[0], server[1])
        await self.app(scope, receive, send)
