"""What the relay has been doing lately, for the console's overview: watches by state, the last
day's deliveries hour by hour, and how long tasks took to be seen ended and webhooks to arrive.

Every figure is read from the database, so every replica shows the same, and each query walks an
index over the time window only (`ix_attempts_attempted_at`, `ix_events_delivered_at`,
`ix_task_changes_at`), never a whole table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from app.delivery import webhooks
from app.store.database import transaction
from app.store.tables import attempts, events, task_changes, watches

#: Lag percentiles are taken over at most this many of the latest values in their window: enough
#: for a p99 that means something, and a bounded read however busy the day was.
LAG_SAMPLE = 10_000

_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Lags:
    """Seconds; None when the window holds nothing. `count` is every value in the window, of
    which the percentiles take the latest `LAG_SAMPLE`."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class HourOfDeliveries:
    start: datetime
    #: Attempts answered with a 2xx.
    succeeded: int
    #: Every other attempt: another status, or no answer.
    failed: int


@dataclass(frozen=True, slots=True)
class Overview:
    watches_by_state: dict[str, int]
    #: The last 24 hours, oldest first; the last one is the hour under way.
    deliveries_by_hour: list[HourOfDeliveries]
    detection_lag_hour: Lags
    detection_lag_day: Lags
    delivery_lag_hour: Lags
    delivery_lag_day: Lags


@transaction
def overview(conn: Connection, *, client_id: str | None, now: datetime) -> Overview:
    """`client_id` None is the operator's view: every app together."""
    hour_ago, day_ago = now - _HOUR, now - 24 * _HOUR
    return Overview(
        watches_by_state=_watches_by_state(conn, client_id),
        deliveries_by_hour=_deliveries_by_hour(conn, client_id, now),
        detection_lag_hour=_detection_lags(conn, client_id, hour_ago),
        detection_lag_day=_detection_lags(conn, client_id, day_ago),
        delivery_lag_hour=_delivery_lags(conn, client_id, hour_ago),
        delivery_lag_day=_delivery_lags(conn, client_id, day_ago),
    )


def _watches_by_state(conn: Connection, client_id: str | None) -> dict[str, int]:
    query = select(watches.c.state, func.count()).group_by(watches.c.state)
    if client_id is not None:
        query = query.where(watches.c.client_id == client_id)
    return {state: count for state, count in conn.execute(query)}


def _deliveries_by_hour(
    conn: Connection, client_id: str | None, now: datetime
) -> list[HourOfDeliveries]:
    """Counted in Python from one pass over the window: bucketing timestamps by hour in SQL is
    written differently by every database."""
    first = now.replace(minute=0, second=0, microsecond=0) - 23 * _HOUR
    query = select(attempts.c.attempted_at, attempts.c.status_code).where(
        attempts.c.attempted_at >= first
    )
    if client_id is not None:
        query = query.join(events, events.c.id == attempts.c.event_id).where(
            events.c.client_id == client_id
        )
    succeeded, failed = [0] * 24, [0] * 24
    for attempted_at, status_code in conn.execute(query):
        hour = min(23, int((attempted_at - first) / _HOUR))
        if status_code is not None and 200 <= status_code < 300:
            succeeded[hour] += 1
        else:
            failed[hour] += 1
    return [
        HourOfDeliveries(first + hour * _HOUR, succeeded[hour], failed[hour]) for hour in range(24)
    ]


def _detection_lags(conn: Connection, client_id: str | None, since: datetime) -> Lags:
    query = select(task_changes.c.detection_lag).where(
        task_changes.c.at >= since, task_changes.c.detection_lag.is_not(None)
    )
    if client_id is not None:
        query = query.where(task_changes.c.client_id == client_id)
    return _lags(conn, query, task_changes.c.at)


def _delivery_lags(conn: Connection, client_id: str | None, since: datetime) -> Lags:
    """From the final event's creation to the receiver's 2xx: the wait for the webhook once the
    relay knew the task's end (and had its result)."""
    lag: ColumnElement[Any] = func.extract("epoch", events.c.delivered_at - events.c.created_at)
    if conn.dialect.name == "sqlite":
        lag = (func.julianday(events.c.delivered_at) - func.julianday(events.c.created_at)) * 86400
    query = select(lag).where(
        events.c.delivered_at >= since, events.c.type.in_(sorted(webhooks.TERMINAL))
    )
    if client_id is not None:
        query = query.where(events.c.client_id == client_id)
    return _lags(conn, query, events.c.delivered_at)


def _lags(conn: Connection, values: Select[Any], newest: ColumnElement[datetime]) -> Lags:
    count = conn.execute(select(func.count()).select_from(values.subquery())).scalar_one()
    latest = values.order_by(newest.desc()).limit(LAG_SAMPLE)
    sample = sorted(float(value) for value in conn.execute(latest).scalars())
    return Lags(count, _percentile(sample, 50), _percentile(sample, 90), _percentile(sample, 99))


def _percentile(ordered: Sequence[float], percent: float) -> float | None:
    """Nearest rank: a value that occurred, never one between two."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]
