"""`python -m app listen` verifies, prints and optionally forwards the webhooks it receives."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.delivery.signing import generate_secret, signature_headers
from tests.commands import Output, command_environment, running, wait_until_serving
from tests.conftest import SIGNING_SECRET
from tests.receiver import Receiver
from tests.servers import free_port, serve

TASK_ID = "041b5701-cfdd-4bf4-97f7-72df0d4db2bb"
VIDEO = hashlib.shake_128(b"a video for the listener").digest(2_000_000)
VIDEO_SHA256 = hashlib.sha256(VIDEO).hexdigest()


def webhook(event_type: str = "task.succeeded", **data: Any) -> bytes:
    """A webhook body in the relay's format (README, "Webhooks")."""
    body = {
        "id": "msg_5c0d6d0b8a2f4e3b9a1c7d2e4f6a8b0c",
        "type": event_type,
        "timestamp": "2026-11-28T18:15:20.398512Z",
        "data": {
            "watch_id": "wat_01a2235e6b3a2694b3cc524cbf8e",
            "task_id": TASK_ID,
            "status": event_type.removeprefix("task."),
            "metadata": {},
            **data,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def signed(body: bytes, secret: str = SIGNING_SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "video-webhook-relay",
        **signature_headers(
            secret, message_id="msg_5c0d6d0b8a2f4e3b9a1c7d2e4f6a8b0c", body=body.decode(),
            at=datetime.now(UTC),
        ),
    }  # fmt: skip


def captured(url: str, sha256: str = VIDEO_SHA256, size: int = len(VIDEO)) -> dict[str, Any]:
    """The `data` fields of a webhook whose video the relay captured and serves at `url`."""
    return {
        "url": url,
        "video": {
            "url": url,
            "source_url": "https://dashscope.example.com/v.mp4",
            "content_type": "video/mp4",
            "size_bytes": size,
            "sha256": sha256,
            "expires_at": "2026-12-05T18:15:20Z",
        },
    }


@dataclass
class VideoHost:
    """Serves `VIDEO` at any path, or answers `status`; holds each answer until `release` is set."""

    status: int = 200
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.release.set()

    async def _handle(self, request: Request) -> Response:
        self.requests.append(str(request.url))
        await self.release.wait()
        if self.status != 200:
            return Response(b"gone", status_code=self.status)
        return Response(VIDEO, media_type="video/mp4")

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle)])


@asynccontextmanager
async def video_host(status: int = 200) -> AsyncIterator[tuple[VideoHost, str]]:
    host = VideoHost(status)
    async with serve(host.app) as url:
        try:
            yield host, url
        finally:
            host.release.set()


def is_video_line(line: str) -> bool:
    return line.startswith("  video")


@asynccontextmanager
async def listener(tmp_path: Path, *options: str) -> AsyncIterator[tuple[str, Output]]:
    port = free_port()
    args = [sys.executable, "-m", "app", "listen", "--port", str(port), *options]
    async with running(*args, env=command_environment(), cwd=tmp_path) as (_, output):
        url = f"http://127.0.0.1:{port}"
        await wait_until_serving(url)
        yield url, output


async def test_a_well_signed_webhook_is_printed_as_verified_and_acknowledged(
    tmp_path: Path,
) -> None:
    link = f"http://127.0.0.1:{free_port()}/v.mp4"  # nothing listens there
    body = webhook(url=link)

    async with listener(tmp_path, "--secret", SIGNING_SECRET) as (url, output):
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{url}/any/path", content=body, headers=signed(body))
        [line] = await output.wait_for_lines(lambda line: "task.succeeded" in line)
        [video] = await output.wait_for_lines(is_video_line)

    assert response.status_code == 204
    assert f"task={TASK_ID}" in line
    assert "status=succeeded" in line
    assert f"url={link}" in line
    assert "capture_error" not in line
    assert "watch=wat_01a2235e6b3a2694b3cc524cbf8e" in line
    assert line.endswith("  verified")
    assert "secret from --secret" in output.lines[0]
    assert video == f"  video download failed: ConnectError ({link})"


async def test_the_video_is_fetched_after_the_answer_and_its_sha256_checked(
    tmp_path: Path,
) -> None:
    async with (
        video_host() as (host, host_url),
        listener(tmp_path, "--secret", SIGNING_SECRET) as (
            url,
            output,
        ),
    ):
        link = f"{host_url}/v1/videos/wat_01a2.mp4?expires=1796000000&signature=c2VjcmV0"
        body = webhook(**captured(link))
        host.release.clear()  # the download cannot finish until the relay has its answer
        async with httpx.AsyncClient() as http:
            response = await http.post(url, content=body, headers=signed(body))
        host.release.set()
        [line] = await output.wait_for_lines(is_video_line)

    assert response.status_code == 204
    assert host.requests == [link]
    assert line == f"  video 2.0 MB video/mp4 sha256 ok ({host_url}/v1/videos/wat_01a2.mp4?…)"


async def test_a_video_that_does_not_match_its_sha256_is_flagged(tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"another video").hexdigest()

    async with (
        video_host() as (_, host_url),
        listener(tmp_path, "--secret", SIGNING_SECRET) as (
            url,
            output,
        ),
    ):
        body = webhook(**captured(f"{host_url}/v.mp4", sha256=wrong, size=len(VIDEO) + 1))
        async with httpx.AsyncClient() as http:
            await http.post(url, content=body, headers=signed(body))
        [line] = await output.wait_for_lines(is_video_line)

    assert line == (
        f"  video 2.0 MB video/mp4 sha256 MISMATCH size MISMATCH (2000000 bytes, announced "
        f"2000001) ({host_url}/v.mp4)"
    )


async def test_a_failed_download_says_how_it_failed(tmp_path: Path) -> None:
    async with (
        video_host(status=410) as (_, host_url),
        listener(tmp_path, "--secret", SIGNING_SECRET) as (url, output),
    ):
        body = webhook(**captured(f"{host_url}/v.mp4"))
        async with httpx.AsyncClient() as http:
            response = await http.post(url, content=body, headers=signed(body))
        [line] = await output.wait_for_lines(is_video_line)

    assert response.status_code == 204
    assert line == f"  video download failed: HTTP 410 ({host_url}/v.mp4)"


async def test_a_capture_error_is_shown_and_the_upstream_link_fetched(tmp_path: Path) -> None:
    async with (
        video_host() as (_, host_url),
        listener(tmp_path, "--secret", SIGNING_SECRET) as (url, output),
    ):
        link = f"{host_url}/upstream.mp4"
        body = webhook(
            url=link, capture_error={"code": "too_large", "message": "The video exceeds 1 GB"}
        )
        async with httpx.AsyncClient() as http:
            await http.post(url, content=body, headers=signed(body))
        [line] = await output.wait_for_lines(lambda line: "task.succeeded" in line)
        [video] = await output.wait_for_lines(is_video_line)

    assert f"url={link}  capture_error=too_large  watch=" in line
    assert video == f"  video 2.0 MB video/mp4 sha256 not announced ({link})"


async def test_the_video_of_an_unverified_webhook_is_not_fetched(tmp_path: Path) -> None:
    async with (
        video_host() as (host, host_url),
        listener(tmp_path, "--secret", SIGNING_SECRET) as (url, output),
    ):
        forged = webhook(**captured(f"{host_url}/forged.mp4"))
        genuine = webhook(**captured(f"{host_url}/genuine.mp4"))
        async with httpx.AsyncClient() as http:
            await http.post(url, content=forged, headers=signed(forged, generate_secret()))
            await http.post(url, content=genuine, headers=signed(genuine))
        await output.wait_for_lines(is_video_line)  # the genuine one, sent after the forged one

    assert host.requests == [f"{host_url}/genuine.mp4"]


async def test_a_badly_signed_webhook_is_flagged_and_refused(tmp_path: Path) -> None:
    body = webhook("task.failed", error={"code": 400, "message": "Prompt refused"})

    async with listener(tmp_path, "--secret", SIGNING_SECRET) as (url, output):
        async with httpx.AsyncClient() as http:
            forged = await http.post(url, content=body, headers=signed(body, generate_secret()))
            unsigned = await http.post(url, content=body)
        lines = await output.wait_for_lines(lambda line: "task.failed" in line, count=2)

    assert forged.status_code == unsigned.status_code == 400
    assert all(line.endswith("NOT VERIFIED") for line in lines)
    assert all('error="Prompt refused"' in line for line in lines)


async def test_the_secret_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    body = webhook()
    port = free_port()
    env = command_environment(RELAY_SIGNING_SECRET=SIGNING_SECRET)
    args = [sys.executable, "-m", "app", "listen", "--port", str(port)]

    async with running(*args, env=env, cwd=tmp_path) as (_, output):
        await wait_until_serving(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"http://127.0.0.1:{port}", content=body, headers=signed(body)
            )

    assert response.status_code == 204
    assert "secret from RELAY_SIGNING_SECRET" in output.lines[0]


async def test_forwarding_passes_the_webhook_on_byte_for_byte_and_relays_the_answer(
    tmp_path: Path,
) -> None:
    app = Receiver()
    app.answer_next(503)

    async with serve(app.app) as app_url, video_host() as (_, host_url):
        body = webhook(**captured(f"{host_url}/v.mp4"))
        headers = signed(body)
        forward_to = f"{app_url}/webhooks/video"
        async with listener(tmp_path, "--secret", SIGNING_SECRET, "--forward-to", forward_to) as (
            url,
            output,
        ):
            async with httpx.AsyncClient() as http:
                first = await http.post(f"{url}/hooks", content=body, headers=headers)
                second = await http.post(f"{url}/hooks", content=body, headers=headers)
            await output.wait_for_lines(lambda line: "answered 204" in line)
            videos = await output.wait_for_lines(is_video_line, count=2)

    assert (first.status_code, second.status_code) == (503, 204)
    [received, _] = app.received
    assert received.path == "/webhooks/video"
    assert received.body == body
    for name, value in headers.items():
        assert received.headers[name] == value
    assert f"-> {forward_to} answered 503" in output.text
    assert videos == [f"  video 2.0 MB video/mp4 sha256 ok ({host_url}/v.mp4)"] * 2


async def test_without_any_way_to_a_secret_it_says_how_to_give_one(tmp_path: Path) -> None:
    async with running(
        sys.executable, "-m", "app", "listen", "--port", str(free_port()),
        env=command_environment(), cwd=tmp_path,
    ) as (process, output):  # fmt: skip
        assert await process.wait() == 1

    assert "pass --secret, set RELAY_SIGNING_SECRET, or set RELAY_API_KEY" in output.text
