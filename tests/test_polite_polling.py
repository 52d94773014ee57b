"""A failing or busy upstream is polled less, never more: per-watch backoff, a shared circuit and
a per-key budget of requests per second."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.conftest import RelayClient, RelayFactory
from tests.flaky_upstream import SERVER_ERROR, FlakyUpstream, task
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
CIRCUIT_OPEN = 'relay_upstream_circuit{relay_upstream_circuit="open"} 1.0'
CIRCUIT_CLOSED = 'relay_upstream_circuit{relay_upstream_circuit="closed"} 1.0'


async def wait_for_metric(relay: RelayClient, line: str, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while line not in await relay.metrics():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_failing_upstream_is_polled_ever_less_often_and_recovery_is_seen(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = flaky.script("video_down", SERVER_ERROR)
    # Polling is under test: results are not captured (capture has tests of its own).
    async with start_relay(
        nebula_base_url=flaky.url, upstream_backoff_max=1, capture=False
    ) as relay:
        watch = await relay.register(task_id, callback)
        await asyncio.sleep(2)

        # Every 0.1 s would be 20 polls; doubling from 0.1 s up to 1 s leaves about 5.
        assert 3 <= len(flaky.requests_for(task_id)) <= 9
        failing = await relay.get(watch["id"])
        assert failing["state"] == "active"
        assert failing["last_poll_error"].startswith("server_error: HTTP 502")

        flaky.script(task_id, task("succeeded", url="https://cdn.example.com/v.mp4"))
        [event] = (await hooks.final_events([watch["id"]], within=5)).values()
    assert event["type"] == "task.succeeded"


async def test_when_most_polls_fail_all_polling_pauses_and_resumes_by_itself(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_ids = [flaky.script(f"video_{n}", SERVER_ERROR) for n in range(20)]
    async with start_relay(
        nebula_base_url=flaky.url, upstream_backoff_max=0.2, circuit_cooldown=1
    ) as relay:
        watches = [await relay.register(task_id, callback) for task_id in task_ids]
        await wait_for_metric(relay, CIRCUIT_OPEN)

        before = len(flaky.seen)
        await asyncio.sleep(1.5)
        # Twenty watches backing off to 0.2 s would make about 150 requests; an open circuit
        # lets one probe through per cooldown.
        assert len(flaky.seen) - before <= 4

        for task_id in task_ids:
            flaky.script(task_id, task("succeeded"))
        events = await hooks.final_events([w["id"] for w in watches], within=10)
        await wait_for_metric(relay, CIRCUIT_CLOSED)
    assert {event["type"] for event in events.values()} == {"task.succeeded"}


async def test_the_upstream_never_gets_more_than_the_budget_and_every_watch_its_turn(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    rps = 10
    task_ids = [
        flaky.script(f"video_{n}", task("in_progress"), task("succeeded")) for n in range(15)
    ]
    async with start_relay(nebula_base_url=flaky.url, upstream_rps=rps, capture=False) as relay:
        watches = [await relay.register(task_id, callback) for task_id in task_ids]

        events = await hooks.final_events([w["id"] for w in watches], within=20)
        metrics = await relay.metrics()

    assert {event["type"] for event in events.values()} == {"task.succeeded"}
    # Requests are spaced 1/rps apart when sent; two more allow for uneven arrival times on a
    # busy machine.
    assert flaky.busiest_second() <= rps + 2
    waited = next(
        line for line in metrics.splitlines() if line.startswith("relay_upstream_rate_limit_wait")
    )
    assert float(waited.split()[-1]) > 0
    assert "relay_poll_lateness_seconds_count" in metrics


async def test_no_more_requests_are_in_flight_than_the_poll_concurrency(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    held = replace(task("in_progress"), hang=True)  # answered only once released
    task_ids = [flaky.script(f"video_{n}", held, task("succeeded")) for n in range(6)]
    async with start_relay(nebula_base_url=flaky.url, poll_concurrency=3) as relay:
        watches = [await relay.register(task_id, callback) for task_id in task_ids]
        async with asyncio.timeout(10):
            while flaky.in_flight < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # time enough for a fourth, were one allowed
        flaky.released.set()

        events = await hooks.final_events([w["id"] for w in watches], within=15)

    assert flaky.most_in_flight == 3
    assert {event["type"] for event in events.values()} == {"task.succeeded"}
