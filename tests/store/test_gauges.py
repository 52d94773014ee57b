"""The work in progress that `/metrics` shows: counted from the live part of the indexes, never
from the history of ended watches, and without the work some replica holds."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from app.encryption import KeyBox
from app.polling.policy import PollPolicy
from app.states import LIVE_WATCH_STATES, WatchState
from app.store import client_apps, gauges, outbox, polls, registrations
from app.store.database import Database, migrate, open_database
from app.store.tables import watches
from app.upstream import UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import parse_snapshot
from tests.conftest import ENCRYPTION_KEY
from tests.store.statements import recorded

OWNER = "own_gauges"
POLICY = PollPolicy(interval=5, backoff_max=60, not_found_grace=60)
RUNNING = parse_snapshot({"task_id": "t", "status": "in_progress"})
ENDED = parse_snapshot({"task_id": "t", "status": "succeeded", "url": "https://x.test/v.mp4"})
BROKEN = UpstreamError(UpstreamErrorKind.SERVER_ERROR, "bad gateway", 502)


async def register(db: Database, count: int) -> list[str]:
    """`count` new watches of the default client, due for a poll at once."""
    boot = await client_apps.bootstrap_default_client(
        db, api_key="rk_gauges", signing_secret=None, key_box=KeyBox.from_config(ENCRYPTION_KEY)
    )
    registry = registrations.Registrations(db, poll_interval=0)
    made = []
    for n in range(count):
        watch, _ = await registry.register(
            client_id=boot.client.id,
            task_id=f"video_{n}",
            callback_url="https://receiver.test/hooks",
            metadata=None,
            expires_after=3600,
        )
        made.append(watch.id)
    return made


async def set_watches(db: Database, ids: list[str], **values: object) -> None:
    await db.run(lambda conn: conn.execute(update(watches).where(watches.c.id.in_(ids)), values))


async def test_the_work_in_progress_leaves_out_ended_watches_and_the_work_held(
    db: Database,
) -> None:
    ended = await register(db, 9)
    await set_watches(db, ended[7:], state=WatchState.COMPLETED, next_poll_at=None)
    now = datetime.now(UTC)
    due = await polls.claim_due_watches(db, owner=OWNER, lease=30, limit=10)
    running, failing, notifying, capturing = due[:2], due[2:4], due[4:6], due[6:]
    await polls.record_polls(
        db,
        owner=OWNER,
        results=[POLICY.after_snapshot(watch, RUNNING, now) for watch in running]
        + [POLICY.after_error(watch, BROKEN, str(BROKEN), now) for watch in failing]
        + [POLICY.after_snapshot(watch, ENDED, now) for watch in notifying],
    )
    await polls.record_polls(
        db,
        owner=OWNER,
        results=[POLICY.after_snapshot(watch, ENDED, now) for watch in capturing],
        capture_timeout=60,
    )
    late = datetime.now(UTC) - timedelta(seconds=20)
    await set_watches(db, [running[0].id], next_poll_at=late)
    held = await outbox.claim_due_events(db, owner=OWNER, lease=30, limit=1)
    assert len(held.events) == 1

    work = await gauges.work_in_progress(db)

    assert work.watches == {
        WatchState.ACTIVE: 4,
        WatchState.CAPTURING: 1,
        WatchState.NOTIFYING: 2,
    }
    assert work.pending_events == 2
    assert work.due_events == 1
    assert 0 <= work.oldest_due_event_age < 20
    assert 20 <= work.oldest_due_poll_age < 40
    assert work.pending_captures == 1


async def test_nothing_due_is_no_age_at_all(db: Database) -> None:
    work = await gauges.work_in_progress(db)

    assert work.watches == dict.fromkeys(LIVE_WATCH_STATES, 0)
    assert (work.due_events, work.oldest_due_event_age, work.oldest_due_poll_age) == (0, 0, 0)


async def test_reading_the_work_in_progress_walks_no_table(tmp_path: Path) -> None:
    """Ended watches are the bulk of a long-lived database: none of them is read."""
    path = tmp_path / "relay.db"
    db = open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
        ended = await register(db, 300)
        await set_watches(db, ended[10:], state=WatchState.COMPLETED, next_poll_at=None)

        with recorded() as executed:
            await gauges.work_in_progress(db)
    finally:
        await db.dispose()

    assert len(executed) == 5
    inspector = sqlite3.connect(path)
    try:
        for statement, parameters in executed:
            plan = inspector.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            steps = [step[-1] for step in plan]
            assert not any(step.startswith("SCAN ") for step in steps), (statement, steps)
            assert any("INDEX" in step for step in steps), (statement, steps)
    finally:
        inspector.close()
