"""Polling and delivery find their rows by key or through a due index, never by walking a table.

SQLite plans without statistics. Given `id IN (…a hundred ids…) AND state = 'active'`, it once
preferred walking its index of every active watch to looking the hundred ids up: each batch of
ending polls cost a pass over all the active watches, milliseconds each at ten thousand of them,
on the event loop, whenever many tasks ended together. Every statement of a poll-and-deliver
cycle is checked here, on a database with enough rows for such a plan to show.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.encryption import KeyBox
from app.polling.policy import PollPolicy
from app.store import client_apps, outbox, polls, registrations, watch_queries
from app.store.database import Database, migrate, open_database
from app.upstream import UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import parse_snapshot
from app.work import AttemptResult, Outcome
from tests.conftest import ENCRYPTION_KEY
from tests.store.statements import recorded, walks

OWNER = "own_plans"
WATCHES = 300
POLICY = PollPolicy(interval=5, backoff_max=60, not_found_grace=60)
RUNNING = parse_snapshot({"task_id": "t", "status": "in_progress", "progress": 40})
ENDED = parse_snapshot({"task_id": "t", "status": "succeeded", "video_url": "https://x.test/v"})
BROKEN = UpstreamError(UpstreamErrorKind.SERVER_ERROR, "bad gateway", 502)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


@pytest.fixture
async def db(path: Path) -> AsyncIterator[Database]:
    db = open_database(f"sqlite:///{path}")
    await migrate(db)
    yield db
    await db.dispose()


async def poll_and_deliver_once(db: Database) -> None:
    """Claim every watch; a third still running, a third ended, a third failed; then deliver the
    webhooks of the ended ones: delivered, due again, given up on."""
    now = datetime.now(UTC)
    due = await polls.claim_due_watches(db, owner=OWNER, lease=30, limit=WATCHES)
    assert len(due) == WATCHES
    results = [
        POLICY.after_snapshot(watch, RUNNING, now)
        if n % 3 == 0
        else POLICY.after_snapshot(watch, ENDED, now)
        if n % 3 == 1
        else POLICY.after_error(watch, BROKEN, str(BROKEN), now)
        for n, watch in enumerate(due)
    ]
    await polls.record_polls(db, owner=OWNER, results=results)
    pending = (await outbox.claim_due_events(db, owner=OWNER, lease=30, limit=WATCHES)).events
    assert len(pending) == WATCHES // 3
    outcomes = [
        Outcome(
            event,
            AttemptResult(
                attempted_at=now,
                duration_ms=3,
                status_code=204 if n % 3 == 0 else 500,
                error=None if n % 3 == 0 else "HTTP 500",
                response_excerpt="",
            ),
            retry_at=now + timedelta(seconds=5) if n % 3 == 1 else None,
        )
        for n, event in enumerate(pending)
    ]
    await outbox.record_attempts(db, owner=OWNER, outcomes=outcomes)


async def register_one_by_one(db: Database, client_id: str) -> None:
    """`WATCHES` watches, tasks `video_0` on, each registered on its own."""
    registry = registrations.Registrations(db, poll_interval=0)
    for n in range(WATCHES):
        await registry.register(
            client_id=client_id,
            task_id=f"video_{n}",
            callback_url="https://receiver.test/hooks",
            metadata=None,
            expires_after=3600,
        )


async def test_no_statement_of_polling_or_delivery_walks_a_table(db: Database, path: Path) -> None:
    boot = await client_apps.bootstrap_default_client(
        db, api_key="rk_plans", signing_secret=None, key_box=KeyBox.from_config(ENCRYPTION_KEY)
    )
    registry = registrations.Registrations(db, poll_interval=0)
    await asyncio.gather(
        *(
            registry.register(
                client_id=boot.client.id,
                task_id=f"video_{n}",
                callback_url="https://receiver.test/hooks",
                metadata=None,
                expires_after=3600,
            )
            for n in range(WATCHES)
        )
    )

    with recorded() as executed:
        await poll_and_deliver_once(db)

    assert len(executed) >= 8
    inspector = sqlite3.connect(path)
    try:
        for statement, parameters in executed:
            plan = inspector.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            steps = [step[-1] for step in plan]
            assert not any(walks(step) for step in steps), (statement, steps)
    finally:
        inspector.close()


async def test_what_every_registration_reads_of_its_client_comes_from_an_index(
    db: Database, path: Path
) -> None:
    """Each request looks its API key up, and each registration may count the client's live
    watches (at most once a second): neither may walk the clients or the watches."""
    key_box = KeyBox.from_config(ENCRYPTION_KEY)
    boot = await client_apps.bootstrap_default_client(
        db, api_key="rk_plans", signing_secret=None, key_box=key_box
    )
    await register_one_by_one(db, boot.client.id)
    apps = client_apps.ClientApps(db, key_box=key_box, secret_overlap=0)

    with recorded() as executed:
        assert await apps.authenticate("rk_plans") == boot.client
        assert await watch_queries.count_live(db, client_id=boot.client.id) == WATCHES

    inspector = sqlite3.connect(path)
    try:
        for statement, parameters in executed:
            plan = inspector.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            steps = [step[-1] for step in plan]
            assert not any(walks(step) for step in steps), (statement, steps)
            assert all("USING COVERING INDEX" in step or "USING INDEX" in step for step in steps)
    finally:
        inspector.close()


async def test_the_search_by_the_start_of_a_task_id_reads_only_the_ids_that_match(
    db: Database, path: Path
) -> None:
    """The console searches an app's watches by a task id's start: an index range, not a pass
    over every watch of the app (`LIKE` would be that, on both databases)."""
    boot = await client_apps.bootstrap_default_client(
        db, api_key="rk_plans", signing_secret=None, key_box=KeyBox.from_config(ENCRYPTION_KEY)
    )
    await register_one_by_one(db, boot.client.id)

    with recorded() as executed:
        found = await watch_queries.page(
            db,
            client_id=boot.client.id,
            limit=51,
            matching=watch_queries.WatchFilter(task_id_prefix="video_29"),
        )

    assert sorted(watch.task_id for watch in found) == sorted(
        ["video_29", *(f"video_29{n}" for n in range(10))]
    )
    [(statement, parameters)] = executed
    inspector = sqlite3.connect(path)
    try:
        plan = inspector.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    finally:
        inspector.close()
    steps = [step[-1] for step in plan]
    assert any(
        "ix_watches_client_id_task_id (client_id=? AND task_id>? AND task_id<?)" in step
        for step in steps
    ), steps
