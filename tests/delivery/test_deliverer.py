"""Delivery semantics: what counts as delivered, when to retry, when to stop, and replaying."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from tests.conftest import RelayClient, RelayFactory, Upstream
from tests.receiver import Answer, Receiver
from tests.servers import serve

Hooks = tuple[Receiver, str]


async def test_every_attempt_is_logged_with_its_outcome(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(500, 502)
    watch = await relay.register(await upstream.submit(polls=1), callback)
    done = await relay.wait_for_state(watch["id"], "completed")

    log = await relay.attempts(watch["id"])
    assert [a["status_code"] for a in log] == [500, 502, 204]
    assert [a["error"] for a in log] == ["HTTP 500", "HTTP 502", None]
    assert log[0]["response_excerpt"] == "answer 500"
    assert all(a["event_id"] == done["event"]["id"] for a in log)
    assert all(a["event_type"] == "task.succeeded" for a in log)
    assert log[0]["next_attempt_at"] is not None
    assert log[-1]["next_attempt_at"] is None
    assert all(a["duration_ms"] >= 0 for a in log)
    assert (await relay.http.get("/v1/watches/wat_nope/attempts")).status_code == 404


async def test_answers_without_a_body_leave_the_connection_to_the_next_webhook(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    """A 204 or an empty 200 has nothing to read, and nothing is waited for; the connection
    still goes back to the pool."""
    hooks, callback = receiver
    hooks.answer_next(Answer(204), Answer(200, body=b""), Answer(204))
    watch_ids = []
    for _ in range(3):
        watch = await relay.register(await upstream.submit(polls=1), callback)
        await relay.wait_for_state(watch["id"], "completed")
        watch_ids.append(watch["id"])

    assert len({hook.peer for hook in hooks.received}) == 1
    [attempt] = await relay.attempts(watch_ids[1])
    assert attempt["status_code"] == 200
    assert (attempt["response_excerpt"], attempt["error"]) == ("", None)


async def test_a_receivers_answer_with_nul_bytes_is_kept_without_them_and_sent_once(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    """PostgreSQL refuses a NUL in text: kept as it came, the attempt could not be written, its
    lease would lapse and the webhook be sent again and again."""
    hooks, callback = receiver
    hooks.answer_next(Answer(200, body=b"ok\x00done"))
    watch = await relay.register(await upstream.submit(polls=1), callback)
    await relay.wait_for_state(watch["id"], "completed")
    await asyncio.sleep(0.5)

    [attempt] = await relay.attempts(watch["id"])
    assert attempt["response_excerpt"] == "ok\ufffddone"
    assert len(hooks.received) == 1


async def test_410_gone_stops_delivery_at_once(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(410)
    watch = await relay.register(await upstream.submit(polls=1), callback)

    failed = await relay.wait_for_state(watch["id"], "failed")
    await asyncio.sleep(0.5)
    assert len(hooks.received) == 1
    assert failed["event"]["state"] == "failed"
    assert "410" in failed["event"]["last_error"]
    [attempt] = await relay.attempts(watch["id"])
    assert attempt["next_attempt_at"] is None


async def test_a_redirect_is_a_failure_and_is_not_followed(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    elsewhere = callback.replace("/hooks", "/elsewhere")
    hooks.default_status = 307
    hooks.answer_next(*[Answer(307, {"location": elsewhere})] * 4)
    watch = await relay.register(await upstream.submit(polls=1), callback)

    failed = await relay.wait_for_state(watch["id"], "failed")
    assert {hook.path for hook in hooks.received} == {"/hooks"}
    assert failed["event"]["last_status_code"] == 307
    assert [a["error"] for a in await relay.attempts(watch["id"])] == ["HTTP 307"] * 4


async def test_a_receiver_slower_than_the_timeout_is_retried(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(Answer(204, delay=2.0))
    async with start_relay(delivery_timeout=0.3) as relay:
        watch = await relay.register(await upstream.submit(polls=1), callback)
        done = await relay.wait_for_state(watch["id"], "completed")
        log = await relay.attempts(watch["id"])
    assert [a["error"] for a in log] == ["timeout", None]
    assert log[0]["status_code"] is None
    assert done["event"]["attempts"] == 2


@pytest.mark.parametrize(("status", "form"), [(429, "seconds"), (503, "http-date")])
async def test_retry_after_delays_the_next_attempt(
    relay: RelayClient, upstream: Upstream, receiver: Hooks, status: int, form: str
) -> None:
    hooks, callback = receiver
    when = datetime.now(UTC) + timedelta(seconds=3)
    value = "2" if form == "seconds" else format_datetime(when, usegmt=True)
    hooks.answer_next(Answer(status, {"retry-after": value}))
    watch = await relay.register(await upstream.submit(polls=1), callback)

    first, second = await hooks.wait_for(2, within=15)
    # Without the header the schedule would retry after 0.1 s.
    assert second.at - first.at >= 1.0
    await relay.wait_for_state(watch["id"], "completed")


async def test_a_retry_is_sent_when_it_falls_due_not_at_the_next_tick(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(Answer(503, {"retry-after": "1"}))
    async with start_relay(tick_interval=5) as relay:
        watch = await relay.register(await upstream.submit(polls=1), callback)
        first, second = await hooks.wait_for(2, within=15)
        await relay.wait_for_state(watch["id"], "completed")
    assert 1.0 <= second.at - first.at < 2.0


async def test_a_receiver_that_is_down_for_a_while_gets_the_webhook_when_back(
    start_relay: RelayFactory, upstream: Upstream
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hooks = Receiver()
    async with start_relay(retry_schedule=(0.3,) * 20) as relay:
        watch = await relay.register(
            await upstream.submit(polls=1), f"http://127.0.0.1:{port}/hooks"
        )
        async with asyncio.timeout(10):
            while len(await relay.attempts(watch["id"])) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with serve(hooks.app, port=port):
            done = await relay.wait_for_state(watch["id"], "completed")
        log = await relay.attempts(watch["id"])
    assert len(hooks.received) == 1
    assert log[0]["error"].startswith("connection error")
    assert log[-1]["status_code"] == 204
    assert done["event"]["attempts"] == len(log)


async def _register_into_an_outage(
    relay: RelayClient, upstream: Upstream, receiver: Hooks, count: int
) -> None:
    """`count` watches whose first webhooks the receiver refuses, asking to be retried in 1 s:
    their retries all fall due together, as after an outage."""
    hooks, callback = receiver
    hooks.answer_next(*[Answer(503, {"retry-after": "1"})] * count)
    for _ in range(count):
        await relay.register(await upstream.submit(polls=1), callback)


async def test_a_backlog_larger_than_the_delivery_slots_is_sent_without_waiting_for_ticks(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """A tick finds the backlog; slots freed by deliveries that end together are refilled at
    once, not at the ticks after it, which are seconds apart here."""
    hooks = receiver[0]
    backlog = 12
    async with start_relay(tick_interval=5, delivery_concurrency=2) as relay:
        await _register_into_an_outage(relay, upstream, receiver, backlog)
        arrivals = await hooks.wait_for(2 * backlog, within=15)

    retries = arrivals[backlog:]
    assert retries[-1].at - retries[0].at < 2.5


async def test_a_fresh_webhook_goes_out_before_a_backlog_of_retries(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """Retries that fell due together (a receiver back from an outage, and slow) do not hold up
    the first attempt of a webhook that came after them: it goes out next, not last."""
    hooks, callback = receiver
    backlog = 4
    async with start_relay(delivery_concurrency=1) as relay:
        await _register_into_an_outage(relay, upstream, receiver, backlog)
        await hooks.wait_for(backlog)
        # Each retry takes 2 s: long enough for the fresh watch to be registered and polled
        # while the first is under way, on a machine busy with other tests too.
        hooks.answer_next(*[Answer(204, delay=2.0)] * backlog)
        await asyncio.sleep(1.5)  # the retries fell due together; the first is under way
        fresh = await relay.register(await upstream.submit(polls=1), callback)
        arrivals = await hooks.wait_for(2 * backlog + 1, within=30)

    after_the_outage = [json.loads(hook.body)["data"]["watch_id"] for hook in arrivals[backlog:]]
    # At most the retry already under way when the fresh webhook was written goes before it.
    assert after_the_outage.index(fresh["id"]) <= 1


async def test_redelivery_sends_the_same_event_again(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    watch = await relay.watch_to_the_end(upstream, callback, "completed")

    response = await relay.http.post(f"/v1/watches/{watch['id']}/redeliver")
    assert response.status_code == 202
    first, again = await hooks.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert again.body == first.body
    done = await relay.wait_for_state(watch["id"], "completed")
    assert done["event"]["attempts"] == 2


async def test_a_dead_event_can_be_redelivered_for_a_full_new_schedule(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.default_status = 500
    watch = await relay.watch_to_the_end(upstream, callback, "failed")
    hooks.answer_next(500, 500)
    hooks.default_status = 204

    await relay.http.post(f"/v1/watches/{watch['id']}/redeliver")
    done = await relay.wait_for_state(watch["id"], "completed")
    assert done["event"]["attempts"] == 4 + 3


async def test_only_an_ended_watch_can_be_redelivered(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    watch = await relay.register(await upstream.submit(polls=1000), callback)
    response = await relay.http.post(f"/v1/watches/{watch['id']}/redeliver")
    assert response.status_code == 409
    assert "active" in response.json()["detail"]
    assert (await relay.http.post("/v1/watches/wat_nope/redeliver")).status_code == 404


async def test_recover_requeues_every_event_given_up_on_since_a_time(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.default_status = 500
    failed = [
        await relay.register(await upstream.submit(polls=1), f"{callback}/{n}") for n in range(3)
    ]
    for watch in failed:
        await relay.wait_for_state(watch["id"], "failed")
    hooks.default_status = 204

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = await relay.http.post("/v1/recover", json={"since": since})
    assert response.status_code == 200
    assert response.json() == {"recovered": 3}
    for watch in failed:
        await relay.wait_for_state(watch["id"], "completed")
    again = await relay.http.post("/v1/recover", json={"since": since})
    assert again.json() == {"recovered": 0}


async def test_recover_ignores_events_older_than_since(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.default_status = 500
    watch = await relay.watch_to_the_end(upstream, callback, "failed")

    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    response = await relay.http.post("/v1/recover", json={"since": future})
    assert response.json() == {"recovered": 0}
    assert (await relay.get(watch["id"]))["state"] == "failed"


@pytest.mark.parametrize(
    "body", [{"since": "yesterday"}, {"since": "2026-11-28T10:00:00"}, {}, {"since": 1, "x": 2}]
)
async def test_recover_needs_an_aware_time(relay: RelayClient, body: dict[str, Any]) -> None:
    response = await relay.http.post("/v1/recover", json=body)
    assert response.status_code == 422


async def test_an_idempotency_key_replays_the_first_answer(relay: RelayClient) -> None:
    body = {"task_id": "task-1", "callback_url": "https://example.com/hook"}
    headers = {"Idempotency-Key": "order-42"}
    first = await relay.http.post("/v1/watches", json=body, headers=headers)
    again = await relay.http.post("/v1/watches", json=body, headers=headers)
    other = await relay.http.post(
        "/v1/watches", json={**body, "task_id": "task-2"}, headers=headers
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    assert len((await relay.http.get("/v1/watches")).json()["data"]) == 1


async def test_an_over_long_idempotency_key_is_refused(relay: RelayClient) -> None:
    response = await relay.http.post(
        "/v1/watches",
        json={"task_id": "t", "callback_url": "https://example.com/hook"},
        headers={"Idempotency-Key": "k" * 256},
    )
    assert response.status_code == 422
    assert (await relay.http.get("/v1/watches")).json()["data"] == []


async def test_status_changes_are_sent_in_order_when_asked_for(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(500, 500)  # the first update is late: nothing may overtake it
    watch = await relay.register(await upstream.submit(polls=4), callback, events=["task.updated"])
    await relay.wait_for_state(watch["id"], "completed")

    delivered = [json.loads(h.body) for h in hooks.received[2:]]
    types = [event["type"] for event in delivered]
    assert types[-1] == "task.succeeded"
    assert set(types[:-1]) == {"task.updated"}
    assert len(types) >= 3
    statuses = [event["data"]["status"] for event in delivered]
    assert statuses[0] == "queued"
    assert "in_progress" in statuses
    assert len({event["id"] for event in delivered}) == len(delivered)
    assert watch["events"] == ["task.updated"]


async def test_status_changes_are_not_sent_by_default(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    watch = await relay.register(await upstream.submit(polls=4), callback)
    await relay.wait_for_state(watch["id"], "completed")
    assert [json.loads(h.body)["type"] for h in hooks.received] == ["task.succeeded"]
    assert watch["events"] == ["task.succeeded", "task.failed"]


@pytest.mark.parametrize("events", [[], ["task.exploded"], "task.updated"])
async def test_unknown_event_types_are_refused(relay: RelayClient, events: object) -> None:
    response = await relay.http.post(
        "/v1/watches",
        json={"task_id": "t", "callback_url": "https://example.com/hook", "events": events},
    )
    assert response.status_code == 422
