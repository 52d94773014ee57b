"""`/metrics` as an operator reads it: every metric a watch's life moves, by how much; the lag
of detection against the truth the upstream knows; registrations counted by outcome; the gauges
of the work in progress the same from every replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.devkit.simulator import FAKE_VIDEO, SimulatedTask, create_simulator
from app.metrics import DetectionLag, DetectionSource, detection_lag
from tests.conftest import RelayClient, RelayFactory, Upstream
from tests.flaky_upstream import FlakyUpstream, enveloped, task
from tests.receiver import Receiver
from tests.servers import serve

Hooks = tuple[Receiver, str]
JSON = {"Content-Type": "application/json"}
POLL_INTERVAL = 0.2
RETRY_AFTER = 0.5
#: How far the relay's and the simulator's readings of the same moment may differ, in seconds.
CLOCKS = 0.05


class Scrape:
    """One scrape of `/metrics`, parsed as Prometheus parses it."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; a labelled series never observed yet counts as 0."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def all_of(self, name: str) -> float:
        """The sum over every series of `name`, whatever its labels."""
        return sum(value for (sample, _), value in self.samples.items() if sample == name)


async def scrape(relay: RelayClient) -> Scrape:
    return Scrape(await relay.metrics())


@asynccontextmanager
async def simulator() -> AsyncIterator[tuple[FastAPI, Upstream]]:
    """A simulated upstream whose tasks the test can look at, to know when they really ended."""
    app = create_simulator()
    async with serve(app) as url:
        yield app, Upstream(url)


def ended_at(app: FastAPI, task_id: str) -> float:
    """When a time-driven task of the simulator ended, as a Unix time."""
    simulated: SimulatedTask = app.state.book.get(task_id)
    ended_on_the_monotonic_clock = simulated.submitted_at + simulated.simulation.duration
    return ended_on_the_monotonic_clock + (time.time() - time.monotonic())


def polled_at(watch: dict[str, Any]) -> float:
    return datetime.fromisoformat(watch["last_polled_at"]).timestamp()


async def test_a_watch_from_registration_to_its_webhook_moves_every_metric_it_should(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(500)
    async with start_relay(
        poll_interval=POLL_INTERVAL, retry_schedule=(RETRY_AFTER,), metrics_refresh=0
    ) as relay:
        before = await scrape(relay)
        task_id = await upstream.submit(duration=1.0)
        watch = await relay.register(task_id, callback)
        polling = await scrape(relay)
        await hooks.wait_for(1)
        retrying = await scrape(relay)
        done = await relay.wait_for_state(watch["id"], "completed")
        after = await scrape(relay)

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert polling("relay_watches", state="active") == 1
    assert retrying("relay_watches", state="notifying") == 1
    assert retrying("relay_outbox_pending_events") == 1
    assert retrying("relay_outbox_due_events") == 0  # being sent, or waiting for its retry
    for state in ("active", "capturing", "notifying"):
        assert after("relay_watches", state=state) == 0
    assert after("relay_outbox_pending_events") == 0
    assert after("relay_outbox_oldest_due_age_seconds") == 0
    assert after("relay_polls_oldest_due_age_seconds") == 0
    assert after("relay_captures_pending") == 0

    assert moved("relay_registrations_total", outcome="created", reason="") == 1
    assert (
        after.all_of("relay_registrations_total") - before.all_of("relay_registrations_total") == 1
    )

    polls = done["poll_count"]
    assert polls >= 3  # queued, in progress, then succeeded
    assert moved("relay_polls_total", outcome="succeeded") == 1
    assert after.all_of("relay_polls_total") - before.all_of("relay_polls_total") == polls
    assert moved("relay_upstream_request_duration_seconds_count") == polls
    assert moved("relay_poll_lateness_seconds_count") == polls

    assert moved("relay_detection_lag_seconds_count", source="midpoint") == 1
    assert moved("relay_detection_lag_seconds_count", source="upstream") == 0

    assert moved("relay_captures_total", outcome="stored") == 1
    assert moved("relay_captured_bytes_total") == len(FAKE_VIDEO)
    assert moved("relay_capture_duration_seconds_count") == 1
    assert after.all_of("relay_capture_errors_total") == 0

    assert moved("relay_delivery_attempts_total", outcome="retry") == 1
    assert moved("relay_delivery_attempts_total", outcome="delivered") == 1
    assert moved("relay_delivery_attempts_total", outcome="dead") == 0
    assert moved("relay_delivery_duration_seconds_count") == 2
    assert moved("relay_delivery_lag_seconds_count") == 1
    assert moved("relay_delivery_lag_seconds_sum") >= RETRY_AFTER  # the retry's wait, at least

    assert after.all_of("relay_watches_expired_total") == 0
    assert after("relay_upstream_circuit", relay_upstream_circuit="closed") == 1


async def test_without_a_completion_time_the_task_is_taken_to_end_midway_between_two_polls(
    start_relay: RelayFactory, receiver: Hooks
) -> None:
    """The simulator's answers carry no completion time: the relay takes the midpoint between
    the last poll that found the task running and the one that found it ended."""
    _, callback = receiver
    async with (
        simulator() as (app, upstream),
        start_relay(
            nebula_base_url=upstream.url, poll_interval=POLL_INTERVAL, capture=False
        ) as relay,
    ):
        task_id = await upstream.submit(duration=1.3)
        watch = await relay.register(task_id, callback)
        done = await relay.wait_for_state(watch["id"], "completed")
        metrics = await scrape(relay)

    true_lag = polled_at(done) - ended_at(app, task_id)
    assert metrics("relay_detection_lag_seconds_count", source="midpoint") == 1
    # Half the gap between the two polls, so the true lag lies between nothing and the whole
    # gap; the gap is a poll interval only while polls are on time (a busy machine delays them).
    estimate = metrics("relay_detection_lag_seconds_sum", source="midpoint")
    assert -CLOCKS <= true_lag <= 2 * estimate + CLOCKS
    # and the poll before the last came after the registration
    registered = datetime.fromisoformat(watch["created_at"]).timestamp()
    assert estimate <= (polled_at(done) - registered) / 2 + CLOCKS


async def test_the_detection_lag_counts_from_the_upstreams_own_completion_time(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    _, callback = receiver
    finished = time.time() - 30
    flaky.script("sora_task", task("in_progress"), enveloped("SUCCESS", finish_time=int(finished)))
    flaky.script(
        "veo_task",
        task("in_progress"),
        task("succeeded", metadata={"completed_at": int(finished)}),
    )
    async with start_relay(nebula_base_url=flaky.url, capture=False) as relay:
        watches = [await relay.register(task_id, callback) for task_id in ("sora_task", "veo_task")]
        done = [await relay.wait_for_state(watch["id"], "completed") for watch in watches]
        metrics = await scrape(relay)

    true_lags = sum(polled_at(watch) - int(finished) for watch in done)
    assert metrics("relay_detection_lag_seconds_count", source="upstream") == 2
    assert metrics("relay_detection_lag_seconds_count", source="midpoint") == 0
    # About 30 s each; the lag is taken when the answer comes, `polled_at` when it is recorded,
    # a fraction of a second later on a busy machine.
    assert metrics("relay_detection_lag_seconds_sum", source="upstream") == pytest.approx(
        true_lags, abs=1.0
    )


async def test_every_answer_to_a_registration_is_counted_by_its_outcome(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    async with start_relay(max_active_watches=2, min_poll_interval=2, poll_interval=60) as relay:
        post = relay.http.post
        first, second, third = [await upstream.submit(duration=120) for _ in range(3)]
        key = {"Idempotency-Key": "order-42"}
        answers = [
            await post("/v1/watches", json={"task_id": first, "callback_url": callback}),
            await post("/v1/watches", json={"task_id": first, "callback_url": callback}),
            await post(
                "/v1/watches", json={"task_id": first, "callback_url": callback}, headers=key
            ),
            await post(
                "/v1/watches", json={"task_id": first, "callback_url": callback}, headers=key
            ),
            await post(
                "/v1/watches", json={"task_id": second, "callback_url": callback}, headers=key
            ),
            await post(
                "/v1/watches",
                json={"task_id": second, "callback_url": callback, "poll_interval": 1.5},
            ),
            await post("/v1/watches", json={"task_id": second}),
            await post("/v1/watches", content=b'{"task_id": "\xff"}', headers=JSON),
            await post("/v1/watches", content=b" " * (1024 * 1024 + 1)),
            await post(
                "/v1/watches",
                json={"task_id": second, "callback_url": callback},
                headers={"Authorization": "Bearer not-a-key"},
            ),
            await post("/v1/watches", json={"task_id": second, "callback_url": callback}),
            await post("/v1/watches", json={"task_id": third, "callback_url": callback}),
        ]
        metrics = await scrape(relay)

    statuses = [answer.status_code for answer in answers]
    assert statuses == [201, 200, 200, 200, 409, 422, 422, 400, 413, 401, 201, 429]
    counted = {
        (labels["outcome"], labels["reason"]): value
        for (name, label_set), value in metrics.samples.items()
        if name == "relay_registrations_total"
        for labels in [dict(label_set)]
        if value
    }
    assert counted == {
        ("created", ""): 2,
        ("existing", ""): 2,
        ("replayed", ""): 1,
        ("refused", "idempotency_conflict"): 1,
        ("refused", "poll_interval"): 1,
        ("refused", "invalid_body"): 1,
        ("refused", "unreadable_body"): 1,
        ("refused", "too_large"): 1,
        ("refused", "unauthorized"): 1,
        ("rate_limited", "live_watches"): 1,
    }


async def test_the_gauges_read_from_the_database_are_reused_for_the_refresh_interval(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    async with start_relay(metrics_refresh=3600, poll_interval=60) as relay:
        first = await scrape(relay)
        await relay.register(await upstream.submit(duration=120), callback)
        second = await scrape(relay)

    assert first("relay_watches", state="active") == 0
    assert second("relay_watches", state="active") == 0  # read again only after an hour
    assert second("relay_registrations_total", outcome="created", reason="") == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_on_one_database_show_the_same_state_gauges(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """Counters count what each replica did; the gauges of the work in progress describe the
    database they share."""
    hooks, callback = receiver
    hooks.default_status = 500
    settings: dict[str, Any] = {"metrics_refresh": 0, "retry_schedule": (3600,)}
    async with start_relay(**settings) as one, start_relay(**settings) as other:
        running = [await upstream.submit(duration=600) for _ in range(2)]
        for task_id in running:
            await one.register(task_id, callback, poll_interval=3600)
        ending = await other.register(await upstream.submit(polls=1), callback)
        await hooks.wait_for(1)
        await wait_until_recorded(one, ending["id"])
        scrapes = await asyncio.gather(scrape(one), scrape(other))

    gauges = [
        ("relay_watches", {"state": "active"}, 2),
        ("relay_watches", {"state": "capturing"}, 0),
        ("relay_watches", {"state": "notifying"}, 1),
        ("relay_outbox_pending_events", {}, 1),
        ("relay_outbox_due_events", {}, 0),
        ("relay_outbox_oldest_due_age_seconds", {}, 0),
        ("relay_polls_oldest_due_age_seconds", {}, 0),
        ("relay_captures_pending", {}, 0),
    ]
    for name, labels, expected in gauges:
        assert [metrics(name, **labels) for metrics in scrapes] == [expected, expected], name
    created = [
        metrics("relay_registrations_total", outcome="created", reason="") for metrics in scrapes
    ]
    assert created == [2, 1]


async def wait_until_recorded(relay: RelayClient, watch_id: str) -> None:
    """Until the watch's first delivery attempt is on record."""
    async with asyncio.timeout(10):
        while not (await relay.get(watch_id))["event"]["attempts"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_scrape_answers_without_an_api_key(relay: RelayClient) -> None:
    async with httpx.AsyncClient(base_url=relay.http.base_url) as anonymous:
        response = await anonymous.get("/metrics")

    assert response.status_code == 200
    assert "relay_watches" in response.text


SEEN = datetime(2026, 11, 28, 18, 15, 20, tzinfo=UTC)


def test_the_upstreams_completion_time_wins_over_the_midpoint() -> None:
    lag = detection_lag(SEEN - timedelta(seconds=3), SEEN - timedelta(seconds=5), SEEN)

    assert lag == DetectionLag(3.0, DetectionSource.UPSTREAM)


def test_without_a_completion_time_the_end_is_taken_halfway_since_the_last_look() -> None:
    lag = detection_lag(None, SEEN - timedelta(seconds=5), SEEN)

    assert lag == DetectionLag(2.5, DetectionSource.MIDPOINT)


def test_an_upstream_clock_ahead_of_the_relays_makes_no_negative_lag() -> None:
    lag = detection_lag(SEEN + timedelta(seconds=2), SEEN - timedelta(seconds=5), SEEN)

    assert lag == DetectionLag(0.0, DetectionSource.UPSTREAM)
