"""The relay's HTTP transport sends what httpx built and fails the way httpx names failures.

Some of these use it under an `httpx.AsyncClient`, as any httpx transport can be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.transport import (
    KEPT_URL_LENGTH,
    USER_AGENT,
    create_transport,
    parsed_url,
    timeout_extension,
)
from tests import certificates
from tests.servers import free_port, serve

TIMEOUT = 0.5


async def _echo(request: Request) -> Response:
    return JSONResponse(
        {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[name.decode(), value.decode()] for name, value in request.headers.raw],
            "body": (await request.body()).decode(),
        }
    )


async def _gzipped(request: Request) -> Response:
    return Response(gzip.compress(b"squeezed"), headers={"Content-Encoding": "gzip"})


async def _sets_cookie(request: Request) -> Response:
    return Response("ok", headers={"Set-Cookie": "session=abc; Path=/"})


async def _redirect(request: Request) -> Response:
    return Response(status_code=302, headers={"Location": "/elsewhere"})


async def _endless(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks())


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = Starlette(
        routes=[
            Route("/gzipped", _gzipped),
            Route("/cookie", _sets_cookie),
            Route("/redirect", _redirect),
            Route("/endless", _endless),
            Route("/{path:path}", _echo, methods=["GET", "POST"]),
        ]
    )
    async with serve(app) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = create_transport(max_connections=4)
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as http:
        yield http


async def _send(request: httpx.Request, *, read_whole: bool = False) -> httpx.Response:
    """One request over a fresh transport, without a client in between."""
    request.extensions = timeout_extension(TIMEOUT, read_whole=read_whole)
    async with create_transport(max_connections=4) as transport:
        response = await transport.handle_async_request(request)
        await response.aread()
        return response


async def test_the_request_httpx_built_is_sent_with_no_header_added(
    server: str, client: httpx.AsyncClient
) -> None:
    request = client.build_request(
        "POST", f"{server}/hook?a=1", content=b'{"n":1}', headers={"X-Trace": "t-1"}
    )

    seen = (await client.send(request)).json()

    assert seen["method"] == "POST"
    assert seen["query"] == "a=1"
    assert seen["body"] == '{"n":1}'
    sent = [(name.decode().lower(), value.decode()) for name, value in request.headers.raw]
    assert sorted((name.lower(), value) for name, value in seen["headers"]) == sorted(sent)


async def test_a_request_without_accept_or_user_agent_is_sent_with_them(server: str) -> None:
    seen = (await _send(httpx.Request("GET", f"{server}/echo"))).json()

    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers["accept"] == "*/*"
    assert headers["user-agent"] == USER_AGENT


async def test_the_timeout_bounds_the_whole_exchange_not_each_read(server: str) -> None:
    """The endless body sends a chunk every 10 ms, so no single read waits long."""
    with pytest.raises(httpx.ReadTimeout):
        await _send(httpx.Request("GET", f"{server}/endless"))


async def test_an_answer_read_whole_comes_with_its_body(server: str) -> None:
    request = httpx.Request(
        "GET", f"{server}/echo", extensions=timeout_extension(TIMEOUT, read_whole=True)
    )
    async with create_transport(max_connections=4) as transport:
        response = await transport.handle_async_request(request)

    assert response.json()["raw_path"] == "/echo"  # read with the transport closed: in hand


async def test_an_answer_read_whole_is_bounded_by_the_timeout_before_it_is_returned(
    server: str,
) -> None:
    request = httpx.Request(
        "GET", f"{server}/endless", extensions=timeout_extension(TIMEOUT, read_whole=True)
    )
    async with create_transport(max_connections=4) as transport:
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)


async def test_a_percent_encoded_path_arrives_as_encoded(server: str) -> None:
    response = await _send(httpx.Request("GET", f"{server}/tasks/a%2Fb%20c%25"))

    assert response.json()["raw_path"] == "/tasks/a%2Fb%20c%25"


async def test_a_compressed_answer_is_decoded_as_httpx_would(
    server: str, client: httpx.AsyncClient
) -> None:
    response = await client.get(f"{server}/gzipped")

    assert response.headers["content-encoding"] == "gzip"
    assert response.content == b"squeezed"


async def test_the_transport_keeps_no_cookies(server: str) -> None:
    async with create_transport(max_connections=4) as transport:
        extensions = timeout_extension(TIMEOUT)
        first = await transport.handle_async_request(
            httpx.Request("GET", f"{server}/cookie", extensions=extensions)
        )
        await first.aread()
        second = await transport.handle_async_request(
            httpx.Request("GET", f"{server}/echo", extensions=extensions)
        )
        await second.aread()

    assert "set-cookie" in first.headers
    assert "cookie" not in {name.lower() for name, _ in second.json()["headers"]}


async def test_a_redirect_is_returned_not_followed(server: str, client: httpx.AsyncClient) -> None:
    response = await client.get(f"{server}/redirect")

    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"


async def test_a_body_left_unread_does_not_hold_its_connection(
    server: str, client: httpx.AsyncClient
) -> None:
    for _ in range(3):  # more than the pool would hold if early closes kept connections busy
        async with client.stream("GET", f"{server}/endless") as response:
            async for chunk in response.aiter_bytes():
                assert chunk
                break

    assert (await client.get(f"{server}/echo")).status_code == 200


async def test_a_refused_connection_is_a_connect_error() -> None:
    with pytest.raises(httpx.ConnectError):
        await _send(httpx.Request("GET", f"http://127.0.0.1:{free_port()}/"))


async def test_a_scheme_it_cannot_send_is_an_unsupported_protocol() -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await _send(httpx.Request("GET", "ftp://127.0.0.1/file"))


async def _ok(request: Request) -> Response:
    return Response("ok")


async def test_a_server_certified_by_no_trusted_authority_is_refused(tmp_path: Path) -> None:
    issued = certificates.issue(tmp_path)
    tls = (issued.server_certificate, issued.server_key)
    async with serve(Starlette(routes=[Route("/", _ok)]), tls=tls) as url:
        with pytest.raises(httpx.ConnectError, match="UnknownIssuer"):
            await _send(httpx.Request("GET", url))


async def test_an_authority_named_in_ssl_cert_file_is_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How an operator trusts a private authority: the image trusts the system's."""
    issued = certificates.issue(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(issued.authority))
    tls = (issued.server_certificate, issued.server_key)
    async with serve(Starlette(routes=[Route("/", _ok)]), tls=tls) as url:
        response = await _send(httpx.Request("GET", url))

    assert response.text == "ok"


Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _misbehaving(peer: Peer) -> AsyncIterator[str]:
    """A raw TCP server that reads a request, then answers as `peer` does."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await peer(reader, writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/"


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(TIMEOUT * 4)


async def _hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass


async def _cuts_the_body_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
    await writer.drain()


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


async def _answers_once_per_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Then closes the connection as the next request arrives on it, as a server does whose idle
    timeout ends just as the client reuses the connection."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")


@pytest.mark.parametrize("read_whole", [False, True], ids=["streamed", "read whole"])
async def test_a_connection_closed_as_it_is_reused_is_replaced_and_the_request_sent_again(
    read_whole: bool,
) -> None:
    async with (
        _misbehaving(_answers_once_per_connection) as url,
        create_transport(max_connections=4) as transport,
    ):
        for _ in range(3):
            request = httpx.Request(
                "GET", url, extensions=timeout_extension(TIMEOUT, read_whole=read_whole)
            )
            response = await transport.handle_async_request(request)
            await response.aread()
            await response.aclose()

            assert response.text == "ok"


@pytest.mark.parametrize(
    ("peer", "error"),
    [
        (_silent, httpx.ReadTimeout),
        (_hangs_up, httpx.RemoteProtocolError),
        (_cuts_the_body_short, httpx.ReadError),
        (_not_http, httpx.RemoteProtocolError),
    ],
    ids=["no answer in time", "hangs up", "body cut short", "not HTTP"],
)
@pytest.mark.parametrize("read_whole", [False, True], ids=["streamed", "read whole"])
async def test_a_failing_peer_raises_the_httpx_error_for_it(
    peer: Peer, error: type[httpx.TransportError], read_whole: bool
) -> None:
    async with _misbehaving(peer) as url:
        with pytest.raises(error):
            await _send(httpx.Request("GET", url), read_whole=read_whole)


def test_a_url_sent_to_again_is_parsed_once() -> None:
    """Polled tasks and shared receivers are sent to again and again."""
    url = "http://127.0.0.1:9/v1/video/generations/video_1?x=1"

    assert parsed_url(url) is parsed_url(url)
    assert parsed_url(url) == httpx.URL(url)


def test_the_urls_of_20_000_watches_polled_in_turn_stay_parsed() -> None:
    """Polled in turn, the least recently used URL is always the next one needed: a cache any
    smaller than the URLs in use would parse every one of them every time."""
    urls = [f"http://127.0.0.1:9/v1/video/generations/video_{n}" for n in range(20_000)]

    first = [parsed_url(url) for url in urls]
    again = [parsed_url(url) for url in urls]

    assert all(a is b for a, b in zip(first, again, strict=True))


def test_a_very_long_url_is_parsed_each_time_rather_than_kept() -> None:
    """What is kept stays small, whatever task ids and callback URLs arrive."""
    url = "http://127.0.0.1:9/v1/video/generations/" + "a" * KEPT_URL_LENGTH

    assert parsed_url(url) is not parsed_url(url)
    assert parsed_url(url) == httpx.URL(url)
