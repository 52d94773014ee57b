"""The console benchmark's database: a client app's watches as a relay that has served them for
four weeks holds them, and another app's among them.

Most watches are over: their webhook delivered (a few after failed attempts), given up on,
cancelled or expired, each with its task's course as the relay saw it. The newest few are
still live: polled, or their webhook being retried. None of them is due during the run, so the
relay does nothing but answer the console.

Rows are written through the relay's own table definitions, thousands a statement, so the same
code fills a SQLite file and a PostgreSQL database.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert

from app import ids
from app.states import EventState, WatchState
from app.store.database import Database
from app.store.tables import attempts, events, task_changes, watches

#: Watches per transaction.
CHUNK = 5_000
#: The newest share of watches still live (created within the last day of four weeks).
LIVE_SHARE = 0.03
#: How the watches that are over ended, with their shares.
ENDINGS: dict[str, float] = {
    "succeeded": 0.82,
    "task failed": 0.08,
    "given up": 0.04,
    "cancelled": 0.03,
    "expired": 0.03,
}
#: Of the live watches, the share whose webhook is being retried; the others are polled.
RETRYING_SHARE = 0.25
#: Of the delivered webhooks, the share that took more than one attempt.
RETRIED_SHARE = 0.1
#: Attempts of a webhook given up on: the default retry schedule's, about a day.
GIVEN_UP_ATTEMPTS = 8
#: Where the webhooks went: nothing listens there, and nothing is sent during the run.
CALLBACK = "http://127.0.0.1:9/hooks"
#: When the live watches are next due: after the run.
NOT_DUE = timedelta(hours=2)


@dataclass(slots=True)
class Seeded:
    """What was written for one app."""

    #: Oldest first, as their ids sort.
    watch_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Rows:
    watches: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.watches) + len(self.events) + len(self.attempts) + len(self.changes)


async def seed(
    db: Database,
    *,
    client_id: str,
    count: int,
    newest: datetime,
    oldest: datetime,
    rng: random.Random,
) -> Seeded:
    """Write `count` watches of `client_id`, created evenly from `oldest` to `newest`."""
    started = time.monotonic()
    seeded = Seeded()
    span = (newest - oldest) / max(1, count)
    for start in range(0, count, CHUNK):
        rows = _Rows()
        for n in range(start, min(count, start + CHUNK)):
            live = n >= count * (1 - LIVE_SHARE)
            kind = _kind(rng, live)
            watch_id, task_id = _watch(rows, rng, client_id, kind, oldest + span * n, newest)
            seeded.watch_ids.append(watch_id)
            seeded.task_ids.append(task_id)
            seeded.kinds[kind] += 1
        await db.run(functools.partial(_write, rows=rows))
        seeded.rows += len(rows)
    seeded.seconds = time.monotonic() - started
    return seeded


def _kind(rng: random.Random, live: bool) -> str:
    if live:
        return "retrying" if rng.random() < RETRYING_SHARE else "polled"
    return rng.choices(list(ENDINGS), weights=list(ENDINGS.values()))[0]


def _write(conn: Connection, rows: _Rows) -> None:
    conn.execute(insert(watches), rows.watches)
    conn.execute(insert(task_changes), rows.changes)
    if rows.events:
        conn.execute(insert(events), rows.events)
    if rows.attempts:
        conn.execute(insert(attempts), rows.attempts)


def _watch(
    rows: _Rows,
    rng: random.Random,
    client_id: str,
    kind: str,
    created: datetime,
    now: datetime,
) -> tuple[str, str]:
    """One watch of `kind` and what goes with it; its id and task id."""
    watch_id = _id("wat", created, rng)
    task_id = f"task_{rng.getrandbits(64):016x}"
    seconds = rng.uniform(40, 300)
    # An expired watch ran to its deadline; the others ended with their task, or were stopped.
    ended = created + (timedelta(days=1) if kind == "expired" else timedelta(seconds=seconds))
    course = _course(kind)
    for step, status in enumerate(course):
        at = created + timedelta(seconds=seconds * step / max(1, len(course) - 1))
        final = status in ("succeeded", "failed")
        rows.changes.append(
            {
                "watch_id": watch_id,
                "client_id": client_id,
                "at": min(at, now),
                "task_status": status,
                "upstream_status": status,
                "progress": 100.0 if final else (None if status == "queued" else 40.0),
                "detection_lag": rng.uniform(0.1, 5.0) if final else None,
            }
        )
    status = course[-1]
    state = {
        "polled": WatchState.ACTIVE,
        "retrying": WatchState.NOTIFYING,
        "given up": WatchState.FAILED,
        "cancelled": WatchState.CANCELLED,
    }.get(kind, WatchState.COMPLETED)
    event_type = {"expired": "watch.expired", "task failed": "task.failed"}.get(
        kind, "task.succeeded"
    )
    polls = max(1, round((ended - created).total_seconds() / 5))
    rows.watches.append(
        {
            "id": watch_id,
            "client_id": client_id,
            "task_id": task_id,
            "callback_url": CALLBACK,
            "metadata": {"order": rng.getrandbits(20)},
            "event_types": None,
            "event_seq": 0 if kind in ("polled", "cancelled") else 1,
            "state": state,
            "task_status": status,
            "upstream_status": status,
            "progress": 100.0 if status in ("succeeded", "failed") else 40.0,
            "poll_count": polls,
            "last_polled_at": min(ended, now),
            "last_poll_error": "upstream answered 502" if kind == "expired" else None,
            "next_poll_at": now + NOT_DUE if kind == "polled" else None,
            "lease_owner": None,
            "lease_expires_at": None,
            "created_at": created,
            "updated_at": min(ended, now),
            "poll_interval": None,
            "deadline_at": created + timedelta(days=1),
            "not_found_since": None,
            "consecutive_errors": 3 if kind == "expired" else 0,
            "consecutive_refusals": 0,
            "upstream_api_key_encrypted": None,
        }
    )
    if kind not in ("polled", "cancelled"):
        _event(rows, rng, client_id, watch_id, task_id, kind, event_type, min(ended, now), now)
    return watch_id, task_id


def _course(kind: str) -> list[str]:
    """The statuses the relay saw, in order."""
    return {
        "polled": ["queued", "in_progress"],
        "cancelled": ["queued", "in_progress"],
        "expired": ["queued", "in_progress"],
        "task failed": ["queued", "in_progress", "failed"],
    }.get(kind, ["queued", "in_progress", "succeeded"])


def _event(
    rows: _Rows,
    rng: random.Random,
    client_id: str,
    watch_id: str,
    task_id: str,
    kind: str,
    event_type: str,
    at: datetime,
    now: datetime,
) -> None:
    """The watch's final webhook and its attempts."""
    event_id = ids.event_id(watch_id, event_type)
    if kind == "given up":
        failures, delivered = GIVEN_UP_ATTEMPTS, False
    elif kind == "retrying":
        failures, delivered = 2, False
    else:
        failures, delivered = (rng.randint(1, 2) if rng.random() < RETRIED_SHARE else 0), True
    tried = at
    for attempt in range(failures):
        tried = at + timedelta(minutes=5 * attempt)
        rows.attempts.append(
            {
                "event_id": event_id,
                "attempted_at": tried,
                "duration_ms": rng.randint(5, 2000),
                "status_code": 503 if attempt % 2 == 0 else None,
                "error": None if attempt % 2 == 0 else "connection refused",
                "response_excerpt": "upstream connect error" if attempt % 2 == 0 else None,
                "next_attempt_at": tried + timedelta(minutes=5),
            }
        )
    if delivered:
        tried = at + timedelta(minutes=5 * failures)
        rows.attempts.append(
            {
                "event_id": event_id,
                "attempted_at": tried,
                "duration_ms": rng.randint(5, 120),
                "status_code": 204,
                "error": None,
                "response_excerpt": "",
                "next_attempt_at": None,
            }
        )
    rows.events.append(
        {
            "id": event_id,
            "watch_id": watch_id,
            "client_id": client_id,
            "seq": 1,
            "type": event_type,
            "callback_url": CALLBACK,
            "payload": _body(event_id, event_type, watch_id, task_id, at),
            "state": {
                "given up": EventState.FAILED,
                "retrying": EventState.PENDING,
            }.get(kind, EventState.DELIVERED),
            "attempts": failures + delivered,
            "round_start": 0,
            "next_attempt_at": now + NOT_DUE if kind == "retrying" else None,
            "lease_owner": None,
            "lease_expires_at": None,
            "last_status_code": 204 if delivered else 503,
            "last_error": None,
            "created_at": at,
            "delivered_at": tried if delivered else None,
        }
    )


def _id(prefix: str, at: datetime, rng: random.Random) -> str:
    """As `app.ids.new_id` makes them, at a time of our choosing."""
    return f"{ids.id_floor(prefix, at)}{rng.getrandbits(64):016x}"


def _body(event_id: str, event_type: str, watch_id: str, task_id: str, at: datetime) -> str:
    """A body of the size and shape the relay sends."""
    status = {"task.succeeded": "succeeded", "task.failed": "failed"}.get(event_type, "expired")
    data: dict[str, Any] = {
        "watch_id": watch_id,
        "task_id": task_id,
        "status": status,
        "upstream_status": status if status != "expired" else "in_progress",
        "metadata": {"order": 7},
    }
    if status == "succeeded":
        data["url"] = f"https://videos.bench.invalid/{task_id}.mp4"
        data["upstream"] = {"task_id": task_id, "status": "succeeded", "url": data["url"]}
    else:
        data["error"] = {"code": 400, "message": "the task did not finish"}
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": data,
        },
        separators=(",", ":"),
    )
