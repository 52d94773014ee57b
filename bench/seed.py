"""Filling the relay's SQLite file with finished watches before it starts (`--seed-finished`,
`--prune-day`): a database that has served a million tasks, without serving them.

Each watch is written as the relay leaves one whose webhook was delivered at the first attempt:
the watch (`completed`), its `task.succeeded` event with a body of the usual size, and the
attempt. Rows go in with `executemany`, many thousands per transaction, straight through the
`sqlite3` module: a million watches take a minute or so, where registering and serving them
would take hours.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.encryption import key_box_for
from app.store import client_apps
from app.store.database import migrate, open_database

#: Watches per transaction.
CHUNK = 20_000

_WATCH = (
    "INSERT INTO watches (id, client_id, task_id, callback_url, metadata, event_types, event_seq,"
    " state, task_status, upstream_status, progress, poll_count, last_polled_at, created_at,"
    " updated_at, deadline_at, consecutive_errors, consecutive_refusals)"
    " VALUES (?, ?, ?, ?, ?, NULL, 1, 'completed', 'succeeded', 'succeeded', 100.0, ?, ?, ?, ?,"
    " ?, 0, 0)"
)
_EVENT = (
    "INSERT INTO events (id, watch_id, client_id, seq, type, callback_url, payload, state,"
    " attempts, round_start, created_at, delivered_at, last_status_code)"
    " VALUES (?, ?, ?, 1, 'task.succeeded', ?, ?, 'delivered', 1, 0, ?, ?, 204)"
)
_ATTEMPT = (
    "INSERT INTO attempts (event_id, attempted_at, duration_ms, status_code, error,"
    " response_excerpt) VALUES (?, ?, 12, 204, NULL, '')"
)


async def default_client(database_url: str, *, api_key: str, signing_secret: str) -> str:
    """The default client app, as the relay will find it at start (same key and secret), in a
    database migrated as the relay would; its id."""
    db = open_database(database_url)
    try:
        await migrate(db)
        boot = await client_apps.bootstrap_default_client(
            db,
            api_key=api_key,
            signing_secret=signing_secret,
            key_box=key_box_for(None, database_url),
        )
    finally:
        await db.dispose()
    return boot.client.id


def seed_finished(
    path: Path, *, client_id: str, count: int, newest: datetime, oldest: datetime, first: int = 0
) -> float:
    """Write `count` finished watches into the SQLite file `path`, their ends spread evenly from
    `oldest` to `newest`; the seconds it took. `first` numbers their tasks after another seed's."""
    started = time.monotonic()
    span = (newest - oldest) / max(1, count)
    connection = sqlite3.connect(path)
    try:
        for start in range(0, count, CHUNK):
            watches, events, attempts = [], [], []
            for n in range(start, min(count, start + CHUNK)):
                ended = oldest + span * n
                created = ended - timedelta(seconds=95)
                watch_id = _id("wat", created)
                event_id = f"msg_{secrets.token_hex(16)}"
                task_id = f"bench_{first + n}_60.0_succeeded"
                callback = "http://127.0.0.1:9/hooks"
                watches.append(
                    (
                        watch_id,
                        client_id,
                        task_id,
                        callback,
                        json.dumps({"order": first + n}),
                        19,
                        text(ended),
                        text(created),
                        text(ended),
                        text(created + timedelta(hours=24)),
                    )
                )
                events.append(
                    (
                        event_id,
                        watch_id,
                        client_id,
                        callback,
                        _body(event_id, watch_id, task_id, ended, first + n),
                        text(ended),
                        text(ended),
                    )
                )
                attempts.append((event_id, text(ended)))
            with connection:
                connection.executemany(_WATCH, watches)
                connection.executemany(_EVENT, events)
                connection.executemany(_ATTEMPT, attempts)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return time.monotonic() - started


def _id(prefix: str, at: datetime) -> str:
    """As `app.ids.new_id` makes them, at a time of our choosing."""
    return f"{prefix}_{int(at.timestamp() * 1000):012x}{secrets.token_hex(8)}"


def text(at: datetime) -> str:
    """As `app.store.types.UTCDateTime` stores times in SQLite."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _body(event_id: str, watch_id: str, task_id: str, at: datetime, order: int) -> str:
    """A `task.succeeded` body of the size the relay writes for the benchmark's tasks."""
    return json.dumps(
        {
            "id": event_id,
            "type": "task.succeeded",
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": {
                "watch_id": watch_id,
                "task_id": task_id,
                "status": "succeeded",
                "upstream_status": "succeeded",
                "progress": 100.0,
                "url": f"https://videos.bench.invalid/{task_id}.mp4",
                "error": None,
                "metadata": {"order": order},
                "upstream": {
                    "task_id": task_id,
                    "status": "succeeded",
                    "format": "mp4",
                    "url": f"https://videos.bench.invalid/{task_id}.mp4",
                },
            },
        },
        separators=(",", ":"),
    )
