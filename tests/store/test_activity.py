"""The console's overview, read from the database: watches by state, the last day's deliveries
by hour, and lag percentiles, for one app or for the operator. On SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.encryption import KeyBox
from app.polling.policy import PollPolicy
from app.store import activity, client_apps, outbox, polls
from app.store.database import Database
from app.work import AttemptResult, DueEvent, Outcome
from tests.conftest import ENCRYPTION_KEY
from tests.store.test_leases import ENDED, claim_events, claim_watches, delivered, register

POLICY = PollPolicy(interval=5, backoff_max=60, not_found_grace=60)


def refused(event: DueEvent) -> Outcome:
    result = AttemptResult(
        attempted_at=datetime.now(UTC),
        duration_ms=7,
        status_code=500,
        error=None,
        response_excerpt="down",
    )
    return Outcome(event, result, retry_at=datetime.now(UTC) + timedelta(hours=1))


async def end_tasks(db: Database, owner: str, lags: list[float]) -> None:
    """Poll every due watch once, each seen ended after the next lag in `lags`."""
    claimed = await claim_watches(db, owner, limit=len(lags))
    results = [
        replace(POLICY.after_snapshot(watch, ENDED, datetime.now(UTC)), detection_lag=lag)
        for watch, lag in zip(claimed, lags, strict=True)
    ]
    await polls.record_polls(db, owner=owner, results=results)


@pytest.fixture
async def other_client_id(db: Database) -> str:
    apps = client_apps.ClientApps(db, key_box=KeyBox.from_config(ENCRYPTION_KEY), secret_overlap=0)
    return (await apps.create("other")).client.id


async def test_an_apps_overview_counts_its_own_watches_deliveries_and_lags_only(
    db: Database, client_id: str, other_client_id: str
) -> None:
    await register(db, client_id, 2)
    await end_tasks(db, "own_poller", [1.0, 3.0])
    first, second = await claim_events(db, "own_deliverer")
    await outbox.record_attempts(
        db, owner="own_deliverer", outcomes=[delivered(first), refused(second)]
    )
    await register(db, other_client_id, 1)
    await end_tasks(db, "own_poller", [9.0])
    await register(db, client_id, 1)

    now = datetime.now(UTC)
    seen = await activity.overview(db, client_id=client_id, now=now)

    assert seen.watches_by_state == {"active": 1, "completed": 1, "notifying": 1}
    assert len(seen.deliveries_by_hour) == 24
    latest = seen.deliveries_by_hour[-1]
    assert latest.start == now.replace(minute=0, second=0, microsecond=0)
    assert (latest.succeeded, latest.failed) == (1, 1)
    assert sum(h.succeeded + h.failed for h in seen.deliveries_by_hour[:-1]) == 0
    assert seen.detection_lag_hour == activity.Lags(count=2, p50=1.0, p90=3.0, p99=3.0)
    assert seen.detection_lag_day == seen.detection_lag_hour
    assert seen.delivery_lag_hour.count == 1
    assert seen.delivery_lag_hour.p50 is not None
    assert 0 <= seen.delivery_lag_hour.p50 < 60


async def test_the_operators_overview_counts_every_app(
    db: Database, client_id: str, other_client_id: str
) -> None:
    await register(db, client_id, 1)
    await register(db, other_client_id, 2)
    await end_tasks(db, "own_poller", [2.0, 4.0, 6.0])

    seen = await activity.overview(db, client_id=None, now=datetime.now(UTC))

    assert seen.watches_by_state == {"notifying": 3}
    assert seen.detection_lag_day == activity.Lags(count=3, p50=4.0, p90=6.0, p99=6.0)
    assert seen.delivery_lag_day == activity.Lags(count=0, p50=None, p90=None, p99=None)


async def test_nothing_older_than_the_window_is_counted(db: Database, client_id: str) -> None:
    await register(db, client_id, 1)
    await end_tasks(db, "own_poller", [5.0])
    [event] = await claim_events(db, "own_deliverer")
    await outbox.record_attempts(db, owner="own_deliverer", outcomes=[delivered(event)])

    two_days_on = datetime.now(UTC) + timedelta(days=2)
    seen = await activity.overview(db, client_id=client_id, now=two_days_on)

    assert sum(h.succeeded + h.failed for h in seen.deliveries_by_hour) == 0
    assert seen.detection_lag_day.count == 0
    assert seen.delivery_lag_day.count == 0
    assert seen.watches_by_state == {"completed": 1}


def test_percentiles_are_values_that_occurred_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert activity._percentile(values, 50) == 50.0
    assert activity._percentile(values, 99) == 99.0
    assert activity._percentile([7.0], 99) == 7.0
    assert activity._percentile([], 50) is None
