"""`python -m app listen` verifies, prints and optionally forwards the webhooks it receives."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.delivery.signing import generate_secret, signature_headers
from tests.commands import Output, command_environment, running, wait_until_serving
from tests.conftest import SIGNING_SECRET
from tests.receiver import Receiver
from tests.servers import free_port, serve

TASK_ID = "041b5701-cfdd-4bf4-97f7-72df0d4db2bb"


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
    body = webhook(url="https://cdn.example.com/v.mp4")

    async with listener(tmp_path, "--secret", SIGNING_SECRET) as (url, output):
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{url}/any/path", content=body, headers=signed(body))
        [line] = await output.wait_for_lines(lambda line: "task.succeeded" in line)

    assert response.status_code == 204
    assert f"task={TASK_ID}" in line
    assert "status=succeeded" in line
    assert "url=https://cdn.example.com/v.mp4" in line
    assert "watch=wat_01a2235e6b3a2694b3cc524cbf8e" in line
    assert line.endswith("  verified")
    assert "secret from --secret" in output.lines[0]


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
    body = webhook(url="https://cdn.example.com/v.mp4")
    headers = signed(body)

    async with serve(app.app) as app_url:
        forward_to = f"{app_url}/webhooks/video"
        async with listener(tmp_path, "--secret", SIGNING_SECRET, "--forward-to", forward_to) as (
            url,
            output,
        ):
            async with httpx.AsyncClient() as http:
                first = await http.post(f"{url}/hooks", content=body, headers=headers)
                second = await http.post(f"{url}/hooks", content=body, headers=headers)
            await output.wait_for_lines(lambda line: "answered 204" in line)

    assert (first.status_code, second.status_code) == (503, 204)
    [received, _] = app.received
    assert received.path == "/webhooks/video"
    assert received.body == body
    for name, value in headers.items():
        assert received.headers[name] == value
    assert f"-> {forward_to} answered 503" in output.text


async def test_without_any_way_to_a_secret_it_says_how_to_give_one(tmp_path: Path) -> None:
    async with running(
        sys.executable, "-m", "app", "listen", "--port", str(free_port()),
        env=command_environment(), cwd=tmp_path,
    ) as (process, output):  # fmt: skip
        assert await process.wait() == 1

    assert "pass --secret, set RELAY_SIGNING_SECRET, or set RELAY_API_KEY" in output.text
