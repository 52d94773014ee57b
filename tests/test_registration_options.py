"""What a registration may add: its own upstream key, deadline and polling interval."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from app.store.database import open_database
from app.store.tables import watches
from tests.conftest import RelayClient, RelayFactory, Upstream
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
ENCRYPTION_KEY = Fernet.generate_key().decode()
APP_KEY = "sk-the-apps-own-account-7f3c9a"


async def test_a_task_submitted_with_the_apps_own_key_is_polled_with_that_key_kept_secret(
    start_relay: RelayFactory,
    upstream: Upstream,
    receiver: Hooks,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks, callback = receiver
    caplog.set_level(logging.DEBUG)
    # The simulated upstream shows a task only to the key that submitted it.
    task_id = await upstream.submit(api_key=APP_KEY, polls=2)
    async with start_relay(encryption_key=ENCRYPTION_KEY) as relay:
        watch = await relay.register(task_id, callback, upstream_api_key=APP_KEY)

        [event] = (await hooks.final_events([watch["id"]])).values()
        shown = [
            watch,
            await relay.get(watch["id"]),
            (await relay.http.get("/v1/watches")).json(),
        ]

    assert event["type"] == "task.succeeded"
    assert "upstream_api_key" not in watch
    for text in [*map(json.dumps, shown), hooks.received[0].body.decode(), caplog.text]:
        assert APP_KEY not in text
    db = open_database(database_url)
    try:
        stored = await db.run(
            lambda conn: conn.execute(select(watches.c.upstream_api_key_encrypted)).scalar()
        )
    finally:
        await db.dispose()
    assert stored is not None
    assert APP_KEY not in stored


async def test_a_watch_shows_its_interval_and_deadline(relay: RelayClient) -> None:
    timed = await relay.register("video_1", "http://127.0.0.1/h", timeout=600, poll_interval=4)
    default = await relay.register("video_2", "http://127.0.0.1/h")

    created = datetime.fromisoformat(timed["created_at"])
    assert datetime.fromisoformat(timed["deadline_at"]) - created == timedelta(seconds=600)
    assert timed["poll_interval"] == 4
    created = datetime.fromisoformat(default["created_at"])
    assert datetime.fromisoformat(default["deadline_at"]) - created == timedelta(hours=24)
    assert default["poll_interval"] is None


async def test_a_refused_registration_never_echoes_the_upstream_key(
    start_relay: RelayFactory,
) -> None:
    async with start_relay(encryption_key=ENCRYPTION_KEY) as relay:
        answers = [
            await relay.http.post("/v1/watches", json=body)
            for body in (
                {"callback_url": "http://x.test/h", "upstream_api_key": APP_KEY},
                {
                    "task_id": "t",
                    "callback_url": "http://x.test/h",
                    "upstream_api_key": APP_KEY * 20,
                },
                {"task_id": "t", "callback_url": "h", "upstream_api_key": f"{APP_KEY} x"},
            )
        ]

    for answer in answers:
        assert answer.status_code == 422
        assert APP_KEY not in answer.text
    assert answers[0].json()["detail"][0]["input"]["upstream_api_key"] == "[redacted]"


#: A bad option, the field blamed, and words of the reason given.
BAD_OPTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"poll_interval": 0.5}, "poll_interval", "greater than or equal to 1"),
    ({"poll_interval": 1.5}, "poll_interval", "at least 2 seconds"),
    ({"poll_interval": 7200}, "poll_interval", "less than or equal to 3600"),
    ({"poll_interval": "often"}, "poll_interval", "valid number"),
    ({"timeout": 0}, "timeout", "greater than 0"),
    ({"timeout": -5}, "timeout", "greater than 0"),
    ({"timeout": 10**9}, "timeout", "less than or equal to 604800"),
    ({"upstream_api_key": ""}, "upstream_api_key", "at least 1 character"),
    ({"upstream_api_key": "sk bad"}, "upstream_api_key", "whitespace"),
    # Found by the API fuzz: accepted once, then every poll failed building its header.
    ({"upstream_api_key": "sk-cl\u00e9"}, "upstream_api_key", "printable ASCII"),
    ({"upstream_api_key": "k" * 513}, "upstream_api_key", "at most 512 characters"),
]


async def test_bad_options_are_refused_with_a_reason(start_relay: RelayFactory) -> None:
    async with start_relay(min_poll_interval=2, encryption_key=ENCRYPTION_KEY) as relay:
        for extra, field, message in BAD_OPTIONS:
            response = await relay.http.post(
                "/v1/watches",
                json={"task_id": "video_1", "callback_url": "http://x.test/h", **extra},
            )

            assert response.status_code == 422, (extra, response.text)
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", field]
            assert message in error["msg"], (extra, error)


async def wait_for_poll_error(relay: RelayClient, watch_id: str, words: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while words not in ((watch := await relay.get(watch_id))["last_poll_error"] or ""):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return watch


async def test_a_key_that_cannot_be_decrypted_pauses_its_watch_until_it_can(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = await upstream.submit(api_key=APP_KEY, polls=1)
    async with start_relay(
        encryption_key=ENCRYPTION_KEY, nebula_base_url="http://127.0.0.1:9"
    ) as relay:
        watch = await relay.register(task_id, callback, upstream_api_key=APP_KEY)

    async with start_relay(upstream_backoff_max=0.2) as relay:
        paused = await wait_for_poll_error(relay, watch["id"], "RELAY_ENCRYPTION_KEY")
        assert paused["state"] == "active"

    rotated = f"{Fernet.generate_key().decode()},{ENCRYPTION_KEY}"
    async with start_relay(encryption_key=rotated, upstream_backoff_max=0.2):
        [event] = (await hooks.final_events([watch["id"]])).values()
    assert event["type"] == "task.succeeded"
