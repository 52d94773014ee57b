"""`UpstreamClient.fetch` against a real HTTP server that answers as the upstream does."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.transport import create_transport
from app.upstream.client import UpstreamClient, UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import TaskError, TaskStatus
from tests.servers import serve

API_KEY = "sk-live-0123456789abcdefSECRET"
TIMEOUT = 0.3
PREFIX = "/v1/video/generations/"
TASK_ID = "video_69095b4ce0048190893a01510c0c98b0"
#: Veo ids are several hundred characters of URL-safe base64; this one also holds characters
#: that would change the URL if they travelled unescaped.
VEO_TASK_ID = ("Q2lZdmNISnZhbVZqZEhNdk1USXpORFUy-_" * 12) + "/../a b?x=1#frag%2F"


@dataclass(frozen=True)
class Seen:
    raw_path: str
    headers: dict[str, str]


@dataclass
class FakeUpstream:
    """Answers every GET with the scripted answer and remembers what it was asked."""

    status: int = 200
    content: bytes = b""
    media_type: str = "application/json"
    hang: bool = False
    seen: list[Seen] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, status: int, body: Any = None, *, raw: bytes | None = None) -> None:
        self.status = status
        self.content = raw if raw is not None else json.dumps(body).encode()

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET"])])

    async def _handle(self, request: Request) -> Response:
        self.seen.append(Seen(request.scope["raw_path"].decode(), dict(request.headers)))
        if self.hang:
            await self.released.wait()
        return Response(self.content, status_code=self.status, media_type=self.media_type)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    async with serve(fake.app) as url:
        try:
            yield fake, url
        finally:
            fake.released.set()  # let a hanging handler end so the server stops at once


@pytest.fixture
async def client(upstream: tuple[FakeUpstream, str]) -> AsyncIterator[UpstreamClient]:
    _, url = upstream
    async with create_transport(max_connections=10) as transport:
        yield UpstreamClient(transport, base_url=url, api_key=API_KEY, timeout=TIMEOUT)


async def fetch_error(client: UpstreamClient, task_id: str = TASK_ID) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await client.fetch(task_id)
    assert API_KEY not in str(caught.value), "the upstream key must never reach a log or the API"
    return caught.value


async def test_the_documented_success_is_a_snapshot(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    fake, _ = upstream
    body = {"task_id": TASK_ID, "status": "succeeded", "format": "mp4", "url": "https://x/v.mp4"}
    fake.answer(200, body)

    snapshot = await client.fetch(TASK_ID)

    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.url == "https://x/v.mp4"
    assert snapshot.body == body


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"task_id": TASK_ID, "status": "queued", "format": "mp4"}, TaskStatus.QUEUED),
        ({"task_id": TASK_ID, "status": "in_progress", "progress": 40}, TaskStatus.IN_PROGRESS),
        ({"task_id": TASK_ID, "status": "submitted"}, TaskStatus.QUEUED),
        ({"code": "success", "data": {"status": "SUCCESS"}}, TaskStatus.SUCCEEDED),
        ({"code": "success", "data": {"status": "NOT_START"}}, TaskStatus.QUEUED),
    ],
)
async def test_every_documented_shape_is_understood(
    upstream: tuple[FakeUpstream, str],
    client: UpstreamClient,
    body: dict[str, Any],
    status: TaskStatus,
) -> None:
    fake, _ = upstream
    fake.answer(200, body)

    assert (await client.fetch(TASK_ID)).status is status


async def test_a_failed_task_is_an_answer_not_an_error(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    fake, _ = upstream
    fake.answer(
        200,
        {"task_id": TASK_ID, "status": "failed", "error": {"code": 400, "message": "nsfw"}},
    )

    snapshot = await client.fetch(TASK_ID)

    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.error == TaskError(code=400, message="nsfw")


async def test_not_a_number_in_an_answer_is_read_as_null(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    """Python's JSON reader takes NaN and Infinity; a webhook body made of them would not be
    JSON."""
    fake, _ = upstream
    fake.answer(200, {"status": "in_progress", "progress": float("nan"), "eta": float("-inf")})

    snapshot = await client.fetch(TASK_ID)

    assert snapshot.progress is None
    assert snapshot.body == {"status": "in_progress", "progress": None, "eta": None}


async def test_the_api_key_is_sent_as_a_bearer_token(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    fake, _ = upstream
    fake.answer(200, {"status": "queued"})

    await client.fetch(TASK_ID)

    [request] = fake.seen
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.raw_path == PREFIX + TASK_ID


async def test_a_watch_that_brought_its_own_key_polls_with_it(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    fake, _ = upstream
    fake.answer(200, {"status": "queued"})

    await client.fetch(TASK_ID, api_key="sk-the-apps-own")
    await client.fetch(TASK_ID, api_key=None)

    assert [seen.headers["authorization"] for seen in fake.seen] == [
        "Bearer sk-the-apps-own",
        f"Bearer {API_KEY}",
    ]


async def test_without_a_key_no_authorization_is_sent(upstream: tuple[FakeUpstream, str]) -> None:
    fake, url = upstream
    fake.answer(200, {"status": "queued"})

    async with create_transport(max_connections=10) as transport:
        client = UpstreamClient(transport, base_url=url + "/", api_key=None, timeout=TIMEOUT)
        await client.fetch(TASK_ID)

    [request] = fake.seen
    assert "authorization" not in request.headers
    assert request.raw_path == PREFIX + TASK_ID, "a trailing slash on the base URL is harmless"


@pytest.mark.parametrize("task_id", [VEO_TASK_ID, "a/b", "a?b", "a#b", "a b", "100%"])
async def test_a_task_id_reaches_the_upstream_intact_as_one_path_segment(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient, task_id: str
) -> None:
    fake, _ = upstream
    fake.answer(200, {"status": "queued"})

    await client.fetch(task_id)

    [request] = fake.seen
    assert request.raw_path.startswith(PREFIX)
    segment = request.raw_path.removeprefix(PREFIX)
    assert not set("/?# ") & set(segment), "every special character is percent-encoded"
    assert unquote(segment) == task_id


@pytest.mark.parametrize("task_id", [".", ".."])
async def test_a_dot_task_id_cannot_climb_out_of_the_task_path(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient, task_id: str
) -> None:
    fake, _ = upstream
    fake.answer(200, {"status": "queued"})

    with pytest.raises(UpstreamError) as raised:
        await client.fetch(task_id)

    assert raised.value.kind is UpstreamErrorKind.NOT_FOUND
    assert fake.seen == [], "nothing was sent: the request would have left the task path"


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            400,
            {"code": "task_not_exist", "message": "task_not_exist", "data": None},
            UpstreamErrorKind.NOT_FOUND,
            "task_not_exist",
        ),
        (
            404,
            {"error": {"message": "Task not found", "type": "invalid_request_error"}},
            UpstreamErrorKind.NOT_FOUND,
            "Task not found",
        ),
        (404, None, UpstreamErrorKind.NOT_FOUND, "Not Found"),
        (
            401,
            {"error": {"message": "invalid token", "type": "new_api_error"}},
            UpstreamErrorKind.UNAUTHORIZED,
            "invalid token",
        ),
        (
            403,
            {"error": {"message": "user is banned", "type": "new_api_error"}},
            UpstreamErrorKind.UNAUTHORIZED,
            "user is banned",
        ),
        (429, None, UpstreamErrorKind.RATE_LIMITED, "Too Many Requests"),
        (500, {"message": "internal error"}, UpstreamErrorKind.SERVER_ERROR, "internal error"),
        (502, None, UpstreamErrorKind.SERVER_ERROR, "Bad Gateway"),
        (503, None, UpstreamErrorKind.SERVER_ERROR, "Service Unavailable"),
        (
            400,
            {"code": "invalid_request", "message": "model required"},
            UpstreamErrorKind.BAD_RESPONSE,
            "model required",
        ),
        (302, None, UpstreamErrorKind.BAD_RESPONSE, "Found"),
    ],
)
async def test_an_error_answer_is_classified_by_what_it_means(
    upstream: tuple[FakeUpstream, str],
    client: UpstreamClient,
    status: int,
    body: dict[str, Any] | None,
    kind: UpstreamErrorKind,
    message: str,
) -> None:
    fake, _ = upstream
    fake.answer(status, body, raw=None if body is not None else b"")

    error = await fetch_error(client)

    assert error.kind is kind
    assert error.status_code == status
    assert str(error) == f"{kind}: HTTP {status}: {message}"


async def test_task_not_exist_means_not_found_even_with_a_200(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    fake, _ = upstream
    fake.answer(200, {"code": "task_not_exist", "message": "task_not_exist", "data": None})

    error = await fetch_error(client)

    assert error.kind is UpstreamErrorKind.NOT_FOUND


@pytest.mark.parametrize(
    "content",
    [
        b"<html>502 Bad Gateway</html>",
        b"",
        b"\xff\xfe not utf-8",
        b"null",
        b"[]",
        b'"succeeded"',
        b'{"task_id": "video_1"}',
        b'{"code": "success", "data": {"task_id": "video_1"}}',
        b'{"code": "success", "data": null}',
        b'{"code": "success", "data": [{"status": "SUCCESS"}]}',
        b'{"id": "video_1", "status": 42}',
    ],
)
async def test_a_200_that_is_not_a_task_is_a_bad_response(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient, content: bytes
) -> None:
    fake, _ = upstream
    fake.answer(200, raw=content)

    error = await fetch_error(client)

    assert error.kind is UpstreamErrorKind.BAD_RESPONSE
    assert error.status_code == 200


async def test_an_upstream_that_does_not_answer_in_time_is_a_timeout(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    fake, _ = upstream
    fake.hang = True

    async with asyncio.timeout(TIMEOUT * 10):
        error = await fetch_error(client)

    assert error.kind is UpstreamErrorKind.TIMEOUT
    assert error.status_code is None
    assert len(fake.seen) == 1, "the request did reach the upstream"


async def test_an_upstream_that_is_not_listening_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.

    async with create_transport(max_connections=10) as transport:
        client = UpstreamClient(
            transport, base_url=f"http://127.0.0.1:{port}", api_key=API_KEY, timeout=TIMEOUT
        )
        error = await fetch_error(client)

    assert error.kind is UpstreamErrorKind.CONNECTION
    assert error.status_code is None
    assert str(error) == "connection: ConnectError"


async def test_nul_in_an_upstreams_strings_never_reaches_what_the_relay_keeps(
    upstream: tuple[FakeUpstream, str], client: UpstreamClient
) -> None:
    """PostgreSQL refuses NUL in text: one such answer would sink the write-back of every poll
    in its batch."""
    fake, _ = upstream
    fake.answer(200, {"status": "in_progress\u0000", "url": "https://x.test/v\u0000.mp4"})
    snapshot = await client.fetch(TASK_ID)
    fake.answer(500, {"error": {"message": "down\u0000now"}})
    error = await fetch_error(client)

    assert snapshot.upstream_status == "in_progress\ufffd"
    assert snapshot.url == "https://x.test/v\ufffd.mp4"
    assert str(error).endswith("down\ufffdnow")
