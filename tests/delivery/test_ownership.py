"""`"verify_callback": true`: a watch is registered only once its callback has echoed a signed
challenge; otherwise 422, and nothing is stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import SIGNING_SECRET, RelayClient, RelayFactory, Upstream
from tests.fake_dns import FakeResolver, relay_resolving_with
from tests.servers import free_port, serve

NAME = "hooks.relay-test.invalid"


@dataclass
class Challenged:
    """A receiver that answers challenges as told (`echo` is "json", "bare", "wrong" or
    "nothing"), and webhooks with 204."""

    echo: str = "json"
    status: int = 200
    delay: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        await asyncio.sleep(self.delay)
        event = json.loads(body)
        if event["type"] != "webhook.verify":
            return Response(status_code=204)
        challenge = event["data"]["challenge"]
        content = {
            "json": json.dumps({"challenge": challenge}),
            "bare": challenge,
            "wrong": json.dumps({"challenge": "not-it"}),
            "nothing": "",
        }[self.echo]
        return Response(content, status_code=self.status)


@pytest.fixture
async def challenged() -> AsyncIterator[tuple[Challenged, str]]:
    receiver = Challenged()
    async with serve(receiver.app) as url:
        yield receiver, f"{url}/hooks"


async def register(relay: RelayClient, callback: str, task_id: str = "t") -> httpx.Response:
    return await relay.http.post(
        "/v1/watches",
        json={"task_id": task_id, "callback_url": callback, "verify_callback": True},
    )


async def nothing_stored(relay: RelayClient) -> bool:
    listed: list[Any] = (await relay.http.get("/v1/watches")).json()["data"]
    return listed == []


@pytest.mark.parametrize("echo", ["json", "bare"])
async def test_a_callback_that_echoes_the_signed_challenge_is_registered(
    relay: RelayClient, challenged: tuple[Challenged, str], echo: str
) -> None:
    receiver, callback = challenged
    receiver.echo = echo

    response = await register(relay, callback)

    assert response.status_code == 201, response.text
    [(headers, body)] = receiver.received
    event = Webhook(SIGNING_SECRET).verify(body, headers)
    assert event["type"] == "webhook.verify"
    assert event["data"]["callback_url"] == callback
    assert len(event["data"]["challenge"]) >= 32
    assert headers["content-type"] == "application/json"


async def test_the_watch_then_gets_its_webhook_as_any_other(
    relay: RelayClient, challenged: tuple[Challenged, str], upstream: Upstream
) -> None:
    receiver, callback = challenged
    response = await register(relay, callback, await upstream.submit(polls=1))
    await relay.wait_for_state(response.json()["id"], "completed")

    assert [json.loads(body)["type"] for _, body in receiver.received] == [
        "webhook.verify",
        "task.succeeded",
    ]


@pytest.mark.parametrize(
    ("echo", "status", "said"),
    [
        ("nothing", 204, "it answered HTTP 204 with an empty body"),
        ("nothing", 200, "it answered HTTP 200 with an empty body"),
        ("wrong", 200, 'it answered HTTP 200 with \'{"challenge": "not-it"}\''),
        ("json", 500, 'it answered HTTP 500 with \'{"challenge"'),
        ("json", 302, "it answered HTTP 302"),
    ],
)
async def test_a_callback_that_does_not_echo_the_challenge_is_refused(
    relay: RelayClient, challenged: tuple[Challenged, str], echo: str, status: int, said: str
) -> None:
    receiver, callback = challenged
    receiver.echo, receiver.status = echo, status

    response = await register(relay, callback)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "callback_url"]
    assert "webhook.verify event with data.challenge" in error["msg"]
    assert said in error["msg"]
    assert await nothing_stored(relay)


async def test_a_callback_that_cannot_be_reached_is_refused(relay: RelayClient) -> None:
    response = await register(relay, f"http://127.0.0.1:{free_port()}/hooks")

    assert response.status_code == 422
    assert "could not be reached for the ownership challenge" in response.text
    assert await nothing_stored(relay)


async def test_a_callback_slower_than_the_challenge_timeout_is_refused(
    start_relay: RelayFactory, challenged: tuple[Challenged, str]
) -> None:
    receiver, callback = challenged
    receiver.delay = 2.0
    async with start_relay(delivery_timeout=0.5) as relay:
        response = await register(relay, callback)

        assert response.status_code == 422
        assert "did not answer the ownership challenge" in response.text
        assert "within 0.5 s" in response.text
        assert await nothing_stored(relay)


async def test_without_verify_callback_nothing_is_sent_at_registration(
    relay: RelayClient, challenged: tuple[Challenged, str]
) -> None:
    receiver, callback = challenged
    response = await relay.http.post("/v1/watches", json={"task_id": "t", "callback_url": callback})

    assert response.status_code == 201
    assert receiver.received == []


async def test_the_challenge_cannot_reach_what_a_webhook_could_not(
    database_url: str, upstream: Upstream, challenged: tuple[Challenged, str], tmp_path: Path
) -> None:
    """It goes through the same checks: a name that resolves to loopback is refused."""
    receiver, callback = challenged
    port = httpx.URL(callback).port
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with relay_resolving_with(
        resolver, database_url, upstream, storage_dir=str(tmp_path / "files")
    ) as relay:
        response = await register(relay, f"http://{NAME}:{port}/hooks")

        assert response.status_code == 422
        assert f"{NAME} resolves to non-public address 127.0.0.1" in response.text
        assert await nothing_stored(relay)
    assert receiver.received == []


async def test_a_challenge_to_an_allowlisted_receiver_is_pinned_and_delivered(
    database_url: str, upstream: Upstream, challenged: tuple[Challenged, str], tmp_path: Path
) -> None:
    receiver, callback = challenged
    port = httpx.URL(callback).port
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with relay_resolving_with(
        resolver,
        database_url,
        upstream,
        callback_allowlist="127.0.0.1/32",
        storage_dir=str(tmp_path / "files"),
    ) as relay:
        response = await register(relay, f"http://{NAME}:{port}/hooks")

    assert response.status_code == 201, response.text
    [(headers, _)] = receiver.received
    assert headers["host"] == f"{NAME}:{port}"


@pytest.mark.parametrize("value", ["true", 1, "yes", None])
async def test_verify_callback_must_be_a_boolean(relay: RelayClient, value: object) -> None:
    response = await relay.http.post(
        "/v1/watches",
        json={"task_id": "t", "callback_url": "https://example.com/h", "verify_callback": value},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "verify_callback"]


async def test_during_a_rotations_overlap_the_challenge_verifies_with_either_secret(
    start_relay: RelayFactory, challenged: tuple[Challenged, str]
) -> None:
    """As the webhooks that follow it do: a receiver not yet on the new secret still answers."""
    receiver, callback = challenged
    admin = {"Authorization": "Bearer admin-token-for-the-rotation-test"}
    async with start_relay(
        admin_token="admin-token-for-the-rotation-test", secret_overlap=3600
    ) as relay:
        me = (await relay.http.get("/v1/client")).json()
        rotated = await relay.http.post(
            f"/v1/admin/clients/{me['id']}/rotate-secret", headers=admin
        )
        response = await register(relay, callback)

    assert response.status_code == 201, response.text
    [(headers, body)] = receiver.received
    new_secret = rotated.json()["signing_secret"]
    assert new_secret != me["signing_secret"]
    for secret in (me["signing_secret"], new_secret):
        assert Webhook(secret).verify(body, headers)["type"] == "webhook.verify"
