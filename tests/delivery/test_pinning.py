"""Deliveries connect to the address that was checked, and only to a permitted one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.delivery import pinning
from app.delivery.callbacks import (
    CallbackPolicy,
    CallbackRefused,
    SystemResolver,
    parse_allowlist,
)
from app.delivery.pinning import PinnedTransport, create_callback_transport
from app.transport import ReqwestTransport
from tests import certificates
from tests.conftest import relay_settings
from tests.fake_dns import FakeResolver
from tests.receiver import Receiver
from tests.servers import serve

NAME = "hooks.relay-test.invalid"


def policy(*allowlist: str) -> CallbackPolicy:
    hosts, networks = parse_allowlist(allowlist)
    return CallbackPolicy(allowed_hosts=hosts, allowed_networks=networks)


@contextlib.asynccontextmanager
async def pinned(
    resolver: FakeResolver, *allowlist: str, ttl: float = 30.0
) -> AsyncIterator[PinnedTransport]:
    transport = PinnedTransport(
        policy=policy(*allowlist), max_connections=10, resolver=resolver, ttl=ttl
    )
    try:
        yield transport
    finally:
        await transport.aclose()


async def post(transport: httpx.AsyncBaseTransport, url: str) -> int:
    """A webhook-like POST; the answer is read and closed, as the deliverer does."""
    response = await transport.handle_async_request(
        httpx.Request("POST", url, content=b"{}", extensions={"timeout": {"read": 5.0}})
    )
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response.status_code


@dataclass
class Connection:
    paths: list[str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Listener:
    """A bare HTTP/1.1 server on 127.0.0.1 that sees what uvicorn hides: each connection, the
    requests that came over it, and when the relay closed it. `/held` is answered only once
    `release` is set."""

    port: int = 0
    connections: list[Connection] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection()
        self.connections.append(connection)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                fields = dict(line.split(":", 1) for line in head[1:] if line)
                length = {k.lower(): v for k, v in fields.items()}.get("content-length", "0")
                await reader.readexactly(int(length))
                path = head[0].split(" ")[1]
                connection.paths.append(path)
                self.arrived.set()
                if path == "/held":
                    await self.release.wait()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connection.closed.set()
            writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    found = Listener()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        found.release.set()
        server.close()
        await server.wait_closed()


async def test_the_connection_goes_to_the_checked_address_whatever_the_name() -> None:
    """`.invalid` names never resolve (RFC 6761), so the request can only arrive pinned."""
    hooks = Receiver()
    resolver = FakeResolver({"relay-test.invalid": ["127.0.0.1"]})
    async with serve(hooks.app) as url, pinned(resolver, "127.0.0.1/32") as transport:
        port = httpx.URL(url).port
        status = await post(transport, f"http://relay-test.invalid:{port}/hooks")

    assert status == 204
    [arrived] = hooks.received
    assert arrived.headers["host"] == f"relay-test.invalid:{port}"
    assert arrived.path == "/hooks"
    assert resolver.asked == ["relay-test.invalid"]


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["93.184.216.34", "127.0.0.1"],
        ["93.184.216.34", "10.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["64:ff9b::7f00:1"],
        ["2002:7f00:1::"],
    ],
)
async def test_a_name_with_any_non_public_answer_is_refused_before_connecting(
    listener: Listener, answers: list[str]
) -> None:
    resolver = FakeResolver({NAME: answers})
    async with pinned(resolver) as transport:
        with pytest.raises(CallbackRefused, match=rf"{NAME} resolves to non-public address"):
            await post(transport, f"http://{NAME}:{listener.port}/hook")

    assert listener.connections == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0x7f.1", "2130706433", "127.1", "[::ffff:7f00:1]", "%31%32%37.0.0.1"]
)
async def test_an_address_in_any_spelling_is_refused_without_a_lookup(
    listener: Listener, host: str
) -> None:
    resolver = FakeResolver()
    async with pinned(resolver) as transport:
        with pytest.raises(CallbackRefused, match="is not a public address"):
            await post(transport, f"http://{host}:{listener.port}/hook")

    assert resolver.asked == []
    assert listener.connections == []


async def test_by_default_names_are_looked_up_by_the_system(listener: Listener) -> None:
    """`localhost` comes from /etc/hosts: no nameserver is asked."""
    assert "127.0.0.1" in await SystemResolver().addresses("localhost", listener.port)
    transport = PinnedTransport(policy=policy(), max_connections=10)
    try:
        with pytest.raises(CallbackRefused, match="localhost resolves to non-public address"):
            await post(transport, f"http://localhost:{listener.port}/hook")
    finally:
        await transport.aclose()

    assert listener.connections == []


async def test_a_name_that_does_not_resolve_is_refused(listener: Listener) -> None:
    async with pinned(FakeResolver()) as transport:
        with pytest.raises(CallbackRefused, match=rf"cannot resolve {NAME}"):
            await post(transport, f"http://{NAME}:{listener.port}/hook")


async def test_the_allowlist_opens_a_network_and_a_host_name(listener: Listener) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"], "other.relay-test.invalid": ["127.0.0.1"]})
    async with pinned(resolver, "127.0.0.1/32") as by_network:
        assert await post(by_network, f"http://127.0.0.1:{listener.port}/literal") == 204
        assert await post(by_network, f"http://{NAME}:{listener.port}/name") == 204
    async with pinned(resolver, NAME) as by_name:
        assert await post(by_name, f"http://{NAME}:{listener.port}/opened") == 204
        with pytest.raises(CallbackRefused, match="non-public"):
            await post(by_name, f"http://other.relay-test.invalid:{listener.port}/other")
        with pytest.raises(CallbackRefused, match="not a public address"):
            await post(by_name, f"http://127.0.0.1:{listener.port}/literal")

    assert resolver.asked == [NAME, NAME, "other.relay-test.invalid"]
    assert [path for c in listener.connections for path in c.paths] == [
        "/literal",
        "/name",
        "/opened",
    ]


async def test_a_verdict_is_kept_for_its_time_and_the_connection_with_it(
    listener: Listener,
) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with pinned(resolver, "127.0.0.1/32") as transport:
        for _ in range(3):
            assert await post(transport, f"http://{NAME}:{listener.port}/hook") == 204

    assert resolver.asked == [NAME]
    assert len(listener.connections) == 1


async def test_a_name_checked_again_with_the_same_answer_keeps_its_connection(
    listener: Listener,
) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with pinned(resolver, "127.0.0.1/32", ttl=0) as transport:
        for _ in range(3):
            assert await post(transport, f"http://{NAME}:{listener.port}/hook") == 204

    assert resolver.asked == [NAME] * 3
    assert len(listener.connections) == 1


async def test_a_refusal_is_not_kept(listener: Listener) -> None:
    """A receiver that fixes its DNS is delivered to at the next attempt."""
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with pinned(resolver) as transport:
        for _ in range(2):
            with pytest.raises(CallbackRefused):
                await post(transport, f"http://{NAME}:{listener.port}/hook")

    assert resolver.asked == [NAME] * 2


async def test_requests_waiting_for_the_same_name_share_one_lookup(listener: Listener) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]}, delay=0.1)
    async with pinned(resolver, "127.0.0.1/32") as transport:
        statuses = await asyncio.gather(
            *(post(transport, f"http://{NAME}:{listener.port}/hook") for _ in range(5))
        )

    assert statuses == [204] * 5
    assert resolver.asked == [NAME]


async def test_a_changed_answer_gets_a_new_connection_and_the_old_one_is_closed(
    listener: Listener,
) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with pinned(resolver, "127.0.0.0/8", ttl=0) as transport:
        assert await post(transport, f"http://{NAME}:{listener.port}/first") == 204
        resolver.answers[NAME] = ["127.0.0.2"]  # nothing listens there

        with pytest.raises(httpx.ConnectError):
            await post(transport, f"http://{NAME}:{listener.port}/second")
        [first] = listener.connections
        await asyncio.wait_for(first.closed.wait(), 5)

    assert first.paths == ["/first"]


async def test_a_request_in_flight_ends_normally_when_its_name_is_refused_meanwhile(
    listener: Listener,
) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with pinned(resolver, "127.0.0.1/32", ttl=0) as transport:
        held = asyncio.create_task(post(transport, f"http://{NAME}:{listener.port}/held"))
        await asyncio.wait_for(listener.arrived.wait(), 5)
        resolver.answers[NAME] = ["127.0.0.2"]

        with pytest.raises(CallbackRefused, match=r"non-public address 127\.0\.0\.2"):
            await post(transport, f"http://{NAME}:{listener.port}/refused")
        [connection] = listener.connections
        assert not connection.closed.is_set()
        listener.release.set()
        assert await held == 204
        await asyncio.wait_for(connection.closed.wait(), 5)

    assert connection.paths == ["/held"]


async def test_no_more_destinations_than_max_routes_are_kept(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pinned client holds a pool of its own: callbacks naming ever new hosts cannot grow
    them without bound. The oldest is let go (and its connection closed)."""
    monkeypatch.setattr(pinning, "MAX_ROUTES", 2)
    names = [f"{letter}.relay-test.invalid" for letter in "abc"]
    resolver = FakeResolver({name: ["127.0.0.1"] for name in names})
    async with pinned(resolver, "127.0.0.1/32") as transport:
        for name in names:
            assert await post(transport, f"http://{name}:{listener.port}/hook") == 204
        first, second, third = listener.connections
        await asyncio.wait_for(first.closed.wait(), 5)
        assert not second.closed.is_set()
        assert not third.closed.is_set()
        assert await post(transport, f"http://{names[0]}:{listener.port}/again") == 204

    assert resolver.asked == [*names, names[0]]


async def _ok(request: Request) -> Response:
    return Response("ok")


async def test_tls_is_checked_against_the_name_not_the_pinned_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reqwest's pin keeps SNI and the certificate check on the host name."""
    (tmp_path / "name").mkdir()
    (tmp_path / "address").mkdir()
    for_name = certificates.issue(tmp_path / "name", host=NAME)
    for_address = certificates.issue(tmp_path / "address", host="127.0.0.1")
    bundle = tmp_path / "authorities.pem"
    bundle.write_bytes(for_name.authority.read_bytes() + for_address.authority.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    app = Starlette(routes=[Route("/", _ok, methods=["POST"])])
    resolver = FakeResolver({NAME: ["127.0.0.1"]})

    tls = (for_name.server_certificate, for_name.server_key)
    async with serve(app, tls=tls) as url, pinned(resolver, "127.0.0.1/32") as transport:
        assert await post(transport, f"https://{NAME}:{httpx.URL(url).port}/") == 200

    tls = (for_address.server_certificate, for_address.server_key)
    async with serve(app, tls=tls) as url, pinned(resolver, "127.0.0.1/32") as transport:
        with pytest.raises(httpx.ConnectError, match=f'not valid for name "{NAME}"'):
            await post(transport, f"https://{NAME}:{httpx.URL(url).port}/")


def test_with_private_callbacks_allowed_nothing_is_checked(tmp_path: Path) -> None:
    settings = relay_settings(f"sqlite:///{tmp_path / 'relay.db'}", "http://127.0.0.1:1")

    assert isinstance(create_callback_transport(settings), ReqwestTransport)
    refusing = settings.model_copy(update={"allow_private_callbacks": False})
    assert isinstance(create_callback_transport(refusing), PinnedTransport)
