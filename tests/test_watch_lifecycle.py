"""A watch from registration to its webhook, against the simulated upstream and a real receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from standardwebhooks import Webhook

from tests.conftest import SIGNING_SECRET, RelayClient, RelayFactory, Upstream
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]


async def test_a_succeeded_task_is_delivered_as_a_signed_webhook(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = await upstream.submit(polls=3)
    watch = await relay.register(task_id, callback, metadata={"order": 42})

    [hook] = await hooks.wait_for(1)
    body = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)

    assert hook.headers["content-type"] == "application/json"
    assert body["id"] == hook.headers["webhook-id"]
    assert body["type"] == "task.succeeded"
    assert body["timestamp"].endswith("Z")
    data = body["data"]
    assert data["watch_id"] == watch["id"]
    assert data["task_id"] == task_id
    assert data["status"] == "succeeded"
    assert data["upstream_status"] == "succeeded"
    assert data["url"] == data["video"]["url"]  # the relay's own copy of the result
    assert data["video"]["source_url"].startswith(upstream.url)
    assert data["metadata"] == {"order": 42}
    assert data["upstream"]["task_id"] == task_id
    assert "error" not in data

    done = await relay.wait_for_state(watch["id"], "completed")
    assert done["task_status"] == "succeeded"
    assert done["poll_count"] == 3
    assert done["event"]["id"] == body["id"]
    assert done["event"]["type"] == "task.succeeded"
    assert done["event"]["attempts"] == 1
    assert done["event"]["delivered_at"] is not None


async def test_a_failed_task_is_delivered_with_its_reason(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = await upstream.submit(polls=2, outcome="failed", failure_reason="nsfw prompt")
    watch = await relay.register(task_id, callback)

    [hook] = await hooks.wait_for(1)
    body = json.loads(hook.body)
    assert body["type"] == "task.failed"
    assert body["data"]["status"] == "failed"
    assert body["data"]["error"] == {"code": 400, "message": "nsfw prompt"}
    assert "url" not in body["data"]
    await relay.wait_for_state(watch["id"], "completed")


async def test_a_new_watch_is_first_polled_one_interval_after_its_registration(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """Apps register a task as soon as they have submitted it: a poll at once would only find it
    queued."""
    _, callback = receiver
    async with start_relay(poll_interval=1) as relay:
        watch = await relay.register(await upstream.submit(duration=120), callback)
        async with asyncio.timeout(5):
            while (polled := await relay.get(watch["id"]))["poll_count"] == 0:
                pass

    registered = datetime.fromisoformat(watch["created_at"])
    first_poll = datetime.fromisoformat(polled["last_polled_at"])
    assert 1 <= (first_poll - registered).total_seconds() < 1.5


async def test_statuses_before_the_end_are_shown_on_the_watch(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    queued = await relay.register(await upstream.submit(duration=120), callback)
    running = await relay.register(await upstream.submit(polls=1000), callback)

    for watch_id, status in ((queued["id"], "queued"), (running["id"], "in_progress")):
        while (watch := await relay.get(watch_id))["poll_count"] < 2:
            pass
        assert watch["state"] == "active"
        assert watch["task_status"] == status
        assert watch["upstream_status"] == status
        assert watch["last_polled_at"] is not None
        assert watch["event"] is None
    assert (await relay.get(running["id"]))["progress"] is not None


async def test_a_video_returned_inline_is_never_copied_into_the_webhook(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = await upstream.submit(model="veo-3.0-fast-generate-001", polls=1)
    await relay.register(task_id, callback)

    [hook] = await hooks.wait_for(1)
    data = json.loads(hook.body)["data"]
    assert data["url"] == data["video"]["url"]
    assert data["video"]["source_url"] is None
    assert data["upstream"]["url"].startswith("[inline video/mp4 omitted")
    assert len(hook.body) < 4096


async def test_a_webhook_is_retried_with_the_same_id_and_body_until_accepted(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(500, 503)
    watch = await relay.register(await upstream.submit(polls=1), callback)

    hooks_seen = await hooks.wait_for(3)
    assert len({hook.headers["webhook-id"] for hook in hooks_seen}) == 1
    assert len({hook.body for hook in hooks_seen}) == 1
    for hook in hooks_seen:
        Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)

    done = await relay.wait_for_state(watch["id"], "completed")
    assert done["event"]["attempts"] == 3
    assert done["event"]["last_status_code"] == 204


async def test_delivery_gives_up_after_the_schedule_and_keeps_the_event(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.default_status = 500
    watch = await relay.register(await upstream.submit(polls=1), callback)

    failed = await relay.wait_for_state(watch["id"], "failed")
    # One first attempt, then one per delay of the schedule (three in these tests).
    assert len(hooks.received) == 4
    assert failed["event"]["state"] == "failed"
    assert failed["event"]["attempts"] == 4
    assert failed["event"]["last_error"] == "HTTP 500"
    assert failed["event"]["next_attempt_at"] is None


async def test_an_unreachable_receiver_is_retried(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, _ = receiver
    closed_port = "http://127.0.0.1:9/hooks"
    watch = await relay.register(await upstream.submit(polls=1), closed_port)

    failed = await relay.wait_for_state(watch["id"], "failed")
    assert failed["event"]["attempts"] == 4
    assert failed["event"]["last_error"].startswith("connection error")
    assert failed["event"]["last_status_code"] is None
    assert hooks.received == []
