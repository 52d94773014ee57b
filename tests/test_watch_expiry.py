"""Watches the relay gives up on end with exactly one `watch.expired` webhook saying why."""

from __future__ import annotations

import logging
import time

import pytest

from tests.conftest import UPSTREAM_KEY, RelayClient, RelayFactory, Upstream
from tests.flaky_upstream import BANNED, REFUSED, FlakyUpstream, task
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]


async def test_a_task_hidden_for_a_moment_after_submit_still_succeeds(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(not_found_grace=10) as relay:
        watch = await relay.register(await upstream.submit(visible_after=1.0, polls=1), callback)

        [event] = (await hooks.final_events([watch["id"]])).values()

    assert event["type"] == "task.succeeded"


async def test_a_task_the_upstream_never_knows_expires_after_the_grace_period(
    start_relay: RelayFactory, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(not_found_grace=1) as relay:
        started = time.monotonic()
        watch = await relay.register("video_never_submitted", callback, metadata={"order": 7})

        [event] = (await hooks.final_events([watch["id"]])).values()
        assert time.monotonic() - started >= 1.0

        done = await relay.wait_for_state(watch["id"], "completed")
    assert event["type"] == "watch.expired"
    data = event["data"]
    assert data["status"] == "expired"
    assert data["error"]["code"] == "task_not_found"
    assert "1 seconds" in data["error"]["message"]
    assert data["metadata"] == {"order": 7}
    assert data["upstream_status"] is None
    assert done["event"]["type"] == "watch.expired"
    assert done["last_poll_error"].startswith("not_found")


async def test_a_refused_key_is_retried_a_few_times_then_the_watch_expires(
    start_relay: RelayFactory,
    flaky: FlakyUpstream,
    receiver: Hooks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks, callback = receiver
    refused = flaky.script("video_refused", task("queued"), REFUSED)  # 401
    banned = flaky.script("video_banned", task("queued"), BANNED)  # 403
    caplog.set_level(logging.DEBUG)
    async with start_relay(nebula_base_url=flaky.url) as relay:
        watches = [await relay.register(task_id, callback) for task_id in (refused, banned)]

        events = await hooks.final_events([watch["id"] for watch in watches])
        done = [await relay.wait_for_state(watch["id"], "completed") for watch in watches]

    for event in events.values():
        assert event["type"] == "watch.expired"
        assert event["data"]["error"]["code"] == "upstream_unauthorized"
        assert event["data"]["upstream_status"] == "queued", "the last status seen is kept"
    assert [watch["task_status"] for watch in done] == ["queued", "queued"]
    assert len(flaky.requests_for(refused)) == len(flaky.requests_for(banned)) == 1 + 3
    assert UPSTREAM_KEY not in caplog.text


async def test_a_task_that_never_ends_expires_at_the_relays_deadline(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(watch_timeout=1) as relay:
        started = time.monotonic()
        watch = await relay.register(await upstream.submit(polls=10_000), callback)

        [event] = (await hooks.final_events([watch["id"]])).values()
        assert time.monotonic() - started >= 1.0

    assert event["type"] == "watch.expired"
    assert event["data"]["error"]["code"] == "deadline_exceeded"
    assert event["data"]["upstream_status"] in ("queued", "in_progress")


async def test_a_watch_may_set_a_shorter_deadline_of_its_own(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    short = await relay.register(await upstream.submit(polls=10_000), callback, timeout=1)
    default = await relay.register(await upstream.submit(polls=10_000), callback)

    [event] = (await hooks.final_events([short["id"]])).values()

    assert event["data"]["error"]["code"] == "deadline_exceeded"
    assert (await relay.get(default["id"]))["state"] == "active"
