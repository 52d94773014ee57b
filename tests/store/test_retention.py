"""Retention, on the store's own queries and the job that runs them: what has been over for
longer than `RELAY_RETENTION` is deleted, with every row of it, a batch at a time; nothing still
at work is, however old. Each test reads the rows back, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.engine import make_url

from app.encryption import KeyBox
from app.metrics import Metrics
from app.polling.policy import PollPolicy
from app.pruning import Pruner
from app.states import CaptureState, EventState
from app.store import (
    client_apps,
    idempotency,
    outbox,
    polls,
    registrations,
    retention,
    watch_queries,
)
from app.store.captures import new_capture_row
from app.store.database import Database, migrate, open_database
from app.store.leases import release_leases
from app.store.tables import attempts, captures, events, idempotency_keys, task_changes, watches
from app.upstream.snapshot import parse_snapshot
from app.work import AttemptResult, Outcome
from tests.conftest import ENCRYPTION_KEY, RelayFactory, Upstream
from tests.receiver import Receiver
from tests.store.statements import recorded, walks

RETENTION = timedelta(days=30)
#: Past the retention, and just short of it.
EXPIRED = RETENTION + timedelta(minutes=1)
NOT_YET = RETENTION - timedelta(minutes=1)
#: Polls far apart: a watch polled once is not due again within a test.
POLICY = PollPolicy(interval=3600, backoff_max=60, not_found_grace=60)
RUNNING = parse_snapshot({"task_id": "t", "status": "in_progress", "progress": 40})
ENDED = parse_snapshot({"task_id": "t", "status": "succeeded", "video_url": "https://x.test/v"})
OWNER = "own_retention"
#: A lease that outlives any test.
LONG_LEASE = 300.0

_tasks = itertools.count()


def pruner(db: Database, metrics: Metrics | None = None, **options: Any) -> Pruner:
    return Pruner(
        db=db,
        metrics=metrics or Metrics(),
        **{"retention": RETENTION.total_seconds(), **options},
    )


async def register(db: Database, client_id: str, count: int, metadata: Any = None) -> list[str]:
    registry = registrations.Registrations(db, poll_interval=0)
    ids = []
    for _ in range(count):
        watch, created = await registry.register(
            client_id=client_id,
            task_id=f"video_{next(_tasks)}",
            callback_url="https://receiver.test/hooks",
            metadata=metadata,
            expires_after=3600,
        )
        assert created
        ids.append(watch.id)
    return ids


async def poll(db: Database, *, ending: Sequence[str] = (), running: Sequence[str] = ()) -> None:
    """One poll of every watch due: those in `ending` see their task succeed, the others see it
    still running."""
    now = datetime.now(UTC)
    due = await polls.claim_due_watches(db, owner=OWNER, lease=LONG_LEASE, limit=10_000)
    assert {watch.id for watch in due} == {*ending, *running}
    results = [
        POLICY.after_snapshot(watch, ENDED if watch.id in ending else RUNNING, now) for watch in due
    ]
    await polls.record_polls(db, owner=OWNER, results=results)


async def deliver(db: Database, *, status_code: int) -> None:
    """One attempt at every webhook due: delivered with a 2xx, given up on otherwise."""
    now = datetime.now(UTC)
    due = (await outbox.claim_due_events(db, owner=OWNER, lease=LONG_LEASE, limit=10_000)).events
    result = AttemptResult(
        attempted_at=now, duration_ms=3, status_code=status_code, error=None, response_excerpt=""
    )
    await outbox.record_attempts(
        db, owner=OWNER, outcomes=[Outcome(event, result, retry_at=None) for event in due]
    )


async def ended(db: Database, client_id: str, count: int, *, status_code: int) -> list[str]:
    """`count` watches whose task ended and whose webhook was delivered (a 2xx) or given up on."""
    ids = await register(db, client_id, count)
    await poll(db, ending=ids)
    await deliver(db, status_code=status_code)
    return ids


async def finished_ago(db: Database, ids: Sequence[str], age: timedelta) -> None:
    """Date the watches' end `age` back."""

    def backdate(conn: Connection) -> None:
        conn.execute(
            update(watches).where(watches.c.id.in_(ids)).values(updated_at=datetime.now(UTC) - age)
        )

    await db.run(backdate)


async def add_capture(db: Database, watch_id: str, client_id: str, state: CaptureState) -> None:
    now = datetime.now(UTC)
    row = new_capture_row(watch_id, client_id, "https://x.test/v", None, now, now)
    row.update(state=state, next_attempt_at=None)
    await db.run(lambda conn: conn.execute(insert(captures), row))


async def kept(db: Database, table: Table, ids: Sequence[str]) -> set[str]:
    """Which of the watches `ids` still have rows in `table`."""
    column = {
        "watches": watches.c.id,
        "events": events.c.watch_id,
        "captures": captures.c.id,
        "task_changes": task_changes.c.watch_id,
    }[table.name]

    def read(conn: Connection) -> set[str]:
        return set(conn.execute(select(column).where(column.in_(ids))).scalars())

    return await db.run(read)


async def attempts_of(db: Database, ids: Sequence[str]) -> int:
    def count(conn: Connection) -> int:
        query = (
            select(attempts.c.id)
            .join(events, events.c.id == attempts.c.event_id)
            .where(events.c.watch_id.in_(ids))
        )
        return len(conn.execute(query).all())

    return await db.run(count)


async def test_watches_over_for_longer_than_the_retention_go_with_every_row_of_theirs(
    db: Database, client_id: str
) -> None:
    [delivered] = await ended(db, client_id, 1, status_code=204)
    [given_up] = await ended(db, client_id, 1, status_code=500)
    [cancelled] = await register(db, client_id, 1)
    await watch_queries.cancel(db, client_id=client_id, watch_id=cancelled)
    [captured] = await ended(db, client_id, 1, status_code=204)
    await add_capture(db, captured, client_id, CaptureState.EXPIRED)
    ids = [delivered, given_up, cancelled, captured]
    assert await attempts_of(db, ids) == 3
    assert await kept(db, task_changes, ids) == {delivered, given_up, captured}
    await finished_ago(db, ids, EXPIRED)

    await pruner(db).run()

    assert await kept(db, watches, ids) == set()
    assert await kept(db, events, ids) == set()
    assert await kept(db, captures, ids) == set()
    assert await kept(db, task_changes, ids) == set()
    assert await attempts_of(db, ids) == 0


async def test_nothing_still_at_work_is_deleted_however_old(db: Database, client_id: str) -> None:
    [polling, notifying, redelivered] = await register(db, client_id, 3)
    await poll(db, ending=[notifying, redelivered], running=[polling])
    # `redelivered`'s webhook is given up on, then queued again by the client.
    due = (await outbox.claim_due_events(db, owner=OWNER, lease=LONG_LEASE, limit=10)).events
    dead = AttemptResult(datetime.now(UTC), 3, 500, None, "")
    await outbox.record_attempts(
        db,
        owner=OWNER,
        outcomes=[
            Outcome(event, dead, retry_at=None) for event in due if event.watch_id == redelivered
        ],
    )
    await release_leases(db, owner=OWNER)
    await watch_queries.redeliver(db, client_id=client_id, watch_id=redelivered)
    # A webhook being delivered when its watch was cancelled: the attempt is still to be recorded.
    [delivering] = await register(db, client_id, 1)
    await poll(db, ending=[delivering])
    await outbox.claim_due_events(db, owner="own_deliverer", lease=LONG_LEASE, limit=10)
    await watch_queries.cancel(db, client_id=client_id, watch_id=delivering)
    # A captured video still served, and a watch not quite old enough.
    [serving, recent, old] = await ended(db, client_id, 3, status_code=204)
    await add_capture(db, serving, client_id, CaptureState.STORED)
    at_work = [polling, notifying, redelivered, delivering, serving]
    await finished_ago(db, [*at_work, old], EXPIRED)
    await finished_ago(db, [recent], NOT_YET)

    await pruner(db).run()

    assert await kept(db, watches, [*at_work, recent, old]) == {*at_work, recent}
    assert await kept(db, events, [notifying, redelivered, delivering]) == {
        notifying,
        redelivered,
        delivering,
    }
    [still_due] = await db.run(
        lambda conn: (
            conn.execute(select(events.c.state).where(events.c.watch_id == notifying))
            .scalars()
            .all()
        )
    )
    assert still_due == EventState.PENDING

    # Once the delivery's lease is let go of, the cancelled watch is over too.
    await release_leases(db, owner="own_deliverer")
    await pruner(db).run()
    assert await kept(db, watches, at_work) == {polling, notifying, redelivered, serving}


async def test_pruning_goes_a_batch_at_a_time_oldest_first(db: Database, client_id: str) -> None:
    ids = await ended(db, client_id, 5, status_code=204)
    for age, watch_id in enumerate(ids):
        await finished_ago(db, [watch_id], EXPIRED + timedelta(days=5 - age))
    cutoff = datetime.now(UTC) - RETENTION

    first = await retention.prune_watches(db, finished_before=cutoff, limit=2)
    assert first == retention.Pruned(found=2, deleted=2)
    assert await kept(db, watches, ids) == set(ids[2:])
    second = await retention.prune_watches(db, finished_before=cutoff, limit=2)
    assert second == retention.Pruned(found=2, deleted=2)
    assert await kept(db, watches, ids) == {ids[4]}

    more = await ended(db, client_id, 4, status_code=204)
    await finished_ago(db, more, EXPIRED)
    metrics = Metrics()
    await pruner(db, metrics, batch=2).run()
    assert await kept(db, watches, [*ids, *more]) == set()
    counted = metrics.registry.get_sample_value("relay_pruned_total", {"kind": "watches"})
    assert counted == 5


async def test_idempotency_keys_are_deleted_once_their_day_is_over(
    db: Database, client_id: str
) -> None:
    answer = idempotency.StoredResponse(request_hash="h", status_code=201, body="{}")
    for key in ("yesterday", "today"):
        await idempotency.save(db, client_id=client_id, key=key, response=answer)

    def backdate(conn: Connection) -> None:
        for key, age in (("yesterday", timedelta(hours=25)), ("today", timedelta(hours=23))):
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == key)
                .values(created_at=datetime.now(UTC) - age)
            )

    await db.run(backdate)

    await pruner(db).run()

    left = await db.run(lambda conn: conn.execute(select(idempotency_keys.c.key)).scalars().all())
    assert left == ["today"]


async def test_captured_files_kept_longer_than_the_retention_keep_their_watches_as_long(
    db: Database, client_id: str
) -> None:
    ids = await ended(db, client_id, 2, status_code=204)
    await finished_ago(db, ids[:1], EXPIRED)
    await finished_ago(db, ids[1:], 2 * EXPIRED)

    await pruner(db, file_ttl=(2 * RETENTION).total_seconds()).run()

    assert await kept(db, watches, ids) == set(ids[:1])


async def test_a_retention_of_zero_keeps_everything(db: Database, client_id: str) -> None:
    ids = await ended(db, client_id, 2, status_code=204)
    await finished_ago(db, ids, timedelta(days=3650))
    answer = idempotency.StoredResponse(request_hash="h", status_code=201, body="{}")
    await idempotency.save(db, client_id=client_id, key="old", response=answer)
    await db.run(
        lambda conn: conn.execute(
            update(idempotency_keys).values(created_at=datetime.now(UTC) - timedelta(days=10))
        )
    )

    keeper = pruner(db, retention=0)
    await keeper.prepare()
    await keeper.run()

    assert await kept(db, watches, ids) == set(ids)
    assert await kept(db, events, ids) == set(ids)
    assert await attempts_of(db, ids) == 2
    keys = await db.run(lambda conn: conn.execute(select(idempotency_keys.c.key)).scalars().all())
    assert keys == ["old"]


async def test_a_pruned_watch_is_not_found_by_get_redeliver_or_attempts(
    db: Database,
    start_relay: RelayFactory,
    upstream: Upstream,
    receiver: tuple[Receiver, str],
) -> None:
    _, callback = receiver
    async with start_relay(capture=False) as relay:
        watch = await relay.watch_to_the_end(upstream, callback)
        assert (await relay.http.get(f"/v1/watches/{watch['id']}/attempts")).status_code == 200
        await finished_ago(db, [watch["id"]], EXPIRED)

        await pruner(db).run()

        for method, path in (
            ("GET", f"/v1/watches/{watch['id']}"),
            ("POST", f"/v1/watches/{watch['id']}/redeliver"),
            ("GET", f"/v1/watches/{watch['id']}/attempts"),
        ):
            response = await relay.http.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json() == {"detail": "no watch with this id"}


async def test_pruning_passes_over_a_watch_another_transaction_holds_instead_of_waiting(
    db: Database, database_url: str, client_id: str
) -> None:
    """As a `redeliver` does: it locks the event, then the watch. On SQLite, one transaction
    runs at a time and there is nothing to pass over."""
    if make_url(database_url).get_backend_name() == "sqlite":
        pytest.skip("SQLite runs one transaction at a time")
    held, free = await ended(db, client_id, 2, status_code=204)
    await finished_ago(db, [held, free], EXPIRED)
    [event_id] = await db.run(
        lambda conn: (
            conn.execute(select(events.c.id).where(events.c.watch_id == held)).scalars().all()
        )
    )
    url = make_url(database_url)
    other = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        locking = other.transaction()
        await locking.start()
        await other.execute("SELECT 1 FROM events WHERE id = $1 FOR UPDATE", event_id)
        cutoff = datetime.now(UTC) - RETENTION
        async with asyncio.timeout(30):
            pruned = await retention.prune_watches(db, finished_before=cutoff, limit=10)
        assert pruned == retention.Pruned(found=2, deleted=1)
        assert await kept(db, watches, [held, free]) == {held}
        await locking.rollback()
    finally:
        await other.close()

    await pruner(db).run()
    assert await kept(db, watches, [held]) == set()


async def test_no_statement_of_pruning_walks_a_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.db"
    db = open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
        boot = await client_apps.bootstrap_default_client(
            db, api_key="rk_plans", signing_secret=None, key_box=KeyBox.from_config(ENCRYPTION_KEY)
        )
        live = await register(db, boot.client.id, 100)
        await poll(db, running=live)
        done = await ended(db, boot.client.id, 100, status_code=204)
        await finished_ago(db, done[:50], EXPIRED)

        with recorded() as executed:
            await pruner(db, batch=20).run()

        assert await kept(db, watches, done) == set(done[50:])
    finally:
        await db.dispose()
    inspector = sqlite3.connect(path)
    try:
        explained = 0
        for statement, parameters in executed:
            if statement.startswith("PRAGMA"):
                continue
            plan = inspector.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            steps = [step[-1] for step in plan]
            assert not any(walks(step) for step in steps), (statement, steps)
            explained += 1
        assert explained >= 7
    finally:
        inspector.close()


def auto_vacuum(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        mode: int = connection.execute("PRAGMA auto_vacuum").fetchone()[0]
        return mode
    finally:
        connection.close()


async def test_a_new_sqlite_file_is_made_to_give_space_back(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    db = open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
    finally:
        await db.dispose()
    assert auto_vacuum(path) == retention.INCREMENTAL


async def test_an_older_sqlite_file_is_rewritten_once_to_give_space_back(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    older = sqlite3.connect(path)
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE kept (value TEXT)")
    older.execute("INSERT INTO kept VALUES ('what was there')")
    older.commit()
    older.close()
    db = open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
        assert auto_vacuum(path) == 0

        assert await retention.enable_incremental_vacuum(db) is True
        assert await retention.enable_incremental_vacuum(db) is False
    finally:
        await db.dispose()
    assert auto_vacuum(path) == retention.INCREMENTAL
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM kept").fetchall() == [("what was there",)]
    check.close()


async def test_pruning_gives_sqlite_s_freed_space_back(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    db = open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
        boot = await client_apps.bootstrap_default_client(
            db, api_key="rk_space", signing_secret=None, key_box=KeyBox.from_config(ENCRYPTION_KEY)
        )
        ids = await register(db, boot.client.id, 400, metadata={"note": "x" * 12_000})
        await poll(db, ending=ids)
        await deliver(db, status_code=204)
        await finished_ago(db, ids, EXPIRED)
        full = _checkpointed_size(path)

        await pruner(db).run()

        free = await db.run(lambda conn: conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
        assert free == 0
        assert await kept(db, watches, ids) == set()
    finally:
        await db.dispose()
    emptied = _checkpointed_size(path)
    assert full > 5_000_000
    assert emptied < full / 4, (full, emptied)


def _checkpointed_size(path: Path) -> int:
    """The file's size once the write-ahead log has been copied into it."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return path.stat().st_size
