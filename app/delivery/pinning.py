"""Sending webhooks to the address that was checked, and only to a permitted one.

Checking a callback's host name and then letting the connection resolve it again leaves a gap:
a name can answer a public address to the check and 127.0.0.1 to the connection (DNS
rebinding), and a pooled connection keeps whatever address it was opened to. So each host name
is resolved once, here; if any answer is not public (and not opened by the allowlist) the
request is refused, and otherwise it is sent through a reqwest client pinned to that host, the
checked address and the port, so reqwest never resolves the name itself. TLS still names the
host (SNI, and the certificate it must match).

Every webhook goes through here, thousands a second, while a lookup costs the event loop a trip
to a thread and back, before any wait for a nameserver. A verdict is therefore kept for
`VERDICT_TTL` seconds, and the pinned client with it; a name checked again keeps its client
(and its pooled connections) while the pinned address is still among the answers. When the
answer changes, or the name is refused, the old client takes no new request and is closed once
the requests it carries have ended, so no connection outlives the verdict it was opened under.
Refusals are not kept: a receiver that fixes its DNS is delivered to at its next attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import httpx

from app.delivery.callbacks import (
    CallbackPolicy,
    CallbackRefused,
    Resolver,
    SystemResolver,
    reqwest_host,
)
from app.transport import Pin, ReqwestTransport, create_transport

if TYPE_CHECKING:
    from app.settings import Settings

#: Seconds for which a host name found to resolve only to permitted addresses is taken as such.
VERDICT_TTL = 30.0
#: Hosts kept at most: each pinned client holds its own pool and TLS roots (about 120 KB).
MAX_ROUTES = 256
#: Seconds after its verdict expired, unused, that a host's client is let go.
UNUSED_FOR = 300.0

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: A destination as httpx parsed it: the host as written, and the port it connects to.
_Key = tuple[bytes, int]
#: Called with a retired route's client once the last request it carries has ended.
_OnIdle = Callable[[ReqwestTransport], None]


def create_callback_transport(
    settings: Settings, *, resolver: Resolver | None = None
) -> httpx.AsyncBaseTransport:
    """What webhooks and ownership challenges are sent over: `PinnedTransport`, unless private
    callbacks are allowed (development), where nothing is checked."""
    if settings.allow_private_callbacks:
        return create_transport(max_connections=settings.delivery_concurrency)
    return PinnedTransport(
        policy=CallbackPolicy.from_settings(settings),
        max_connections=settings.delivery_concurrency,
        resolver=resolver,
    )


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that refuses destinations the policy does not permit and connects to
    exactly the address it judged (see the module's docstring).

    :raises CallbackRefused: from `handle_async_request`, when the destination is refused.
    """

    def __init__(
        self,
        *,
        policy: CallbackPolicy,
        max_connections: int,
        resolver: Resolver | None = None,
        ttl: float = VERDICT_TTL,
    ) -> None:
        self._policy = policy
        self._max_connections = max_connections
        self._resolver = resolver or SystemResolver()
        self._ttl = ttl
        #: Addresses written in the URL need no lookup, so no pin: they share one client.
        self._literals = ReqwestTransport(max_connections=max_connections)
        self._routes: dict[_Key, _Route] = {}
        self._checking: dict[_Key, asyncio.Task[_Route]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(
                f"the URL's scheme must be http or https, not {url.scheme!r}", request=request
            )
        key = (url.raw_host, port)
        route = self._routes.get(key)
        if route is None or route.checked_until <= time.monotonic():
            route = await self._check(key, str(url))
            while route.retired:  # replaced while this request waited for its check
                route = await self._check(key, str(url))
        return await route.send(request)

    async def _check(self, key: _Key, url: str) -> _Route:
        """One check per destination at a time: a backlog of webhooks to one receiver, all due
        together, waits for a single lookup."""
        task = self._checking.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._checked_route(key, url))
            self._checking[key] = task
            task.add_done_callback(lambda done: self._checked(key, done))
        return await asyncio.shield(task)

    def _checked(self, key: _Key, task: asyncio.Task[_Route]) -> None:
        if self._checking.get(key) is task:
            del self._checking[key]
        if not task.cancelled():
            task.exception()  # retrieved, even when every request that waited for it is gone

    async def _checked_route(self, key: _Key, url: str) -> _Route:
        try:
            seen = reqwest_host(url)
        except ValueError as exc:
            raise CallbackRefused(f"callback_url is not a valid URL: {exc}") from None
        if seen.address is not None:
            if not self._policy.address_allowed(seen.address):
                raise CallbackRefused(f"{seen.name} is not a public address")
            return self._keep(key, _Route(self._literals, seen.name, math.inf, owned=False))
        try:
            addresses = await self._permitted_addresses(seen.name, key[1])
        except CallbackRefused:
            self._drop(key)
            raise
        checked_until = time.monotonic() + self._ttl
        kept = self._routes.get(key)
        if kept is not None and kept.address in addresses:
            kept.checked_until = checked_until
            return kept
        pinned = ReqwestTransport(
            max_connections=self._max_connections, pin=Pin(seen.name, addresses[0], key[1])
        )
        await pinned.open()
        return self._keep(key, _Route(pinned, addresses[0], checked_until, owned=True))

    async def _permitted_addresses(self, host: str, port: int) -> list[str]:
        """The name's addresses, once every one of them is permitted."""
        try:
            addresses = await self._resolver.addresses(host, port)
        except OSError as exc:
            raise CallbackRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
        except UnicodeError:
            raise CallbackRefused(f"cannot resolve {host}: not a valid host name") from None
        if not addresses:
            raise CallbackRefused(f"cannot resolve {host}: no address")
        if self._policy.host_allowed(host):
            return addresses
        for address in addresses:
            if not self._policy.address_allowed(ipaddress.ip_address(address)):
                raise CallbackRefused(f"{host} resolves to non-public address {address}")
        return addresses

    def _keep(self, key: _Key, route: _Route) -> _Route:
        self._drop(key)
        now = time.monotonic()
        for unused in [k for k, r in self._routes.items() if r.checked_until + UNUSED_FOR < now]:
            self._drop(unused)
        while len(self._routes) >= MAX_ROUTES:
            self._drop(next(iter(self._routes)))
        self._routes[key] = route
        return route

    def _drop(self, key: _Key) -> None:
        """The destination's client takes no new request, and is closed once idle."""
        route = self._routes.pop(key, None)
        if route is not None:
            route.retire(self._close_later)

    def _close_later(self, transport: ReqwestTransport) -> None:
        task = asyncio.get_running_loop().create_task(transport.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for task in list(self._checking.values()):
            task.cancel()
        routes = list(self._routes.values())
        self._routes.clear()
        await asyncio.gather(
            *(route.transport.aclose() for route in routes if route.owned),
            *self._closing,
            self._literals.aclose(),
            return_exceptions=True,
        )


class _Route:
    """Where requests to one destination go, until `checked_until`; counts the requests it
    carries, so that a retired client is closed only once they have ended."""

    __slots__ = (
        "address",
        "checked_until",
        "in_flight",
        "on_idle",
        "owned",
        "retired",
        "transport",
    )

    def __init__(
        self, transport: ReqwestTransport, address: str, checked_until: float, *, owned: bool
    ) -> None:
        self.transport = transport
        self.address = address
        self.checked_until = checked_until
        self.owned = owned
        self.in_flight = 0
        self.retired = False
        self.on_idle: _OnIdle | None = None

    async def send(self, request: httpx.Request) -> httpx.Response:
        if not self.owned:
            return await self.transport.handle_async_request(request)
        self.in_flight += 1
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException:
            self.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Leased(response.stream, self)
        return response

    def release(self) -> None:
        self.in_flight -= 1
        if self.on_idle is not None and not self.in_flight:
            self.on_idle(self.transport)

    def retire(self, on_idle: _OnIdle) -> None:
        self.retired = True
        if not self.owned:
            return
        self.on_idle = on_idle
        if not self.in_flight:
            on_idle(self.transport)


class _Leased(httpx.AsyncByteStream):
    """A response body that gives its request back to the route when closed."""

    def __init__(self, stream: httpx.AsyncByteStream, route: _Route) -> None:
        self._stream = stream
        self._route: _Route | None = route

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        route, self._route = self._route, None
        try:
            await self._stream.aclose()
        finally:
            if route is not None:
                route.release()
