"""What the console reads of watches: a task's course as polls saw it, the events as sent, and
pages of watches narrowed by any of the console's filters. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select

from app.encryption import KeyBox
from app.polling.policy import PollPolicy
from app.states import WatchState
from app.store import client_apps, outbox, polls, registrations, watch_queries
from app.store.database import Database
from app.store.tables import task_changes
from app.store.watch_queries import WatchFilter as Filter
from app.upstream import TaskSnapshot
from app.upstream.snapshot import parse_snapshot
from app.work import DueWatch, PollResult
from tests.conftest import ENCRYPTION_KEY
from tests.store.test_leases import (
    ENDED,
    LAPSE,
    SHORT_LEASE,
    claim_events,
    claim_watches,
    delivered,
    register,
)

#: Every watch is due again at once, so one test can poll it several times.
AT_ONCE = PollPolicy(interval=0, backoff_max=60, not_found_grace=60)
QUEUED = parse_snapshot({"task_id": "t", "status": "queued"})


def running(progress: int) -> TaskSnapshot:
    return parse_snapshot({"task_id": "t", "status": "in_progress", "progress": progress})


async def poll(db: Database, snapshot: TaskSnapshot, *, owner: str = "own_poller") -> DueWatch:
    """Claim the one due watch and write back a poll that found `snapshot`."""
    [watch] = await claim_watches(db, owner)
    result = AT_ONCE.after_snapshot(watch, snapshot, datetime.now(UTC))
    await polls.record_polls(db, owner=owner, results=[result])
    return watch


async def count_changes(db: Database) -> int:
    def count(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(task_changes)).scalar_one())

    return await db.run(count)


async def test_the_course_of_a_task_is_each_status_it_was_seen_in_once_with_its_progress(
    db: Database, client_id: str
) -> None:
    [watch_id] = await register(db, client_id, 1)

    await poll(db, QUEUED)
    await poll(db, running(30))
    await poll(db, running(70))  # progress alone is not a change of course
    [watch] = await claim_watches(db, "own_poller")
    ended = replace(AT_ONCE.after_snapshot(watch, ENDED, datetime.now(UTC)), detection_lag=2.5)
    await polls.record_polls(db, owner="own_poller", results=[ended])

    history = await watch_queries.history(db, client_id=client_id, watch_id=watch_id)
    assert history is not None
    assert [(c.task_status, c.progress) for c in history.changes] == [
        ("queued", None),
        ("in_progress", 30),
        ("succeeded", None),
    ]
    assert [c.at for c in history.changes] == sorted(c.at for c in history.changes)
    assert history.watch.poll_count == 4
    assert history.client_name == "default"
    [event] = history.events
    assert event.type == "task.succeeded"
    assert '"status":"succeeded"' in event.payload.replace(" ", "")
    assert history.attempts == []


async def test_the_detection_lag_of_a_task_is_kept_with_the_change_that_ended_it(
    db: Database, client_id: str
) -> None:
    await register(db, client_id, 1)
    [watch] = await claim_watches(db, "own_poller")
    ended = replace(AT_ONCE.after_snapshot(watch, ENDED, datetime.now(UTC)), detection_lag=1.25)

    await polls.record_polls(db, owner="own_poller", results=[ended])

    def lags(conn: Connection) -> list[float | None]:
        return list(conn.execute(select(task_changes.c.detection_lag)).scalars())

    assert await db.run(lags) == [1.25]


async def test_a_write_back_that_lost_its_lease_adds_nothing_to_the_course(
    db: Database, client_id: str
) -> None:
    await register(db, client_id, 1)
    [late] = await claim_watches(db, "own_a", lease=SHORT_LEASE)
    await asyncio.sleep(LAPSE)
    await poll(db, QUEUED, owner="own_b")

    result = AT_ONCE.after_snapshot(late, running(10), datetime.now(UTC))
    await polls.record_polls(db, owner="own_a", results=[result])

    assert await count_changes(db) == 1


async def test_the_history_shows_every_attempt_of_the_event_and_the_body_sent(
    db: Database, client_id: str
) -> None:
    [watch_id] = await register(db, client_id, 1)
    await poll(db, ENDED)
    [event] = await claim_events(db, "own_deliverer")
    await outbox.record_attempts(db, owner="own_deliverer", outcomes=[delivered(event)])

    history = await watch_queries.history(db, client_id=client_id, watch_id=watch_id)

    assert history is not None
    assert history.watch.state == WatchState.COMPLETED
    [sent] = history.events
    assert sent.payload == event.payload
    assert sent.delivered_at is not None
    assert [(a.event_id, a.status_code) for a in history.attempts] == [(sent.id, 204)]


async def test_another_apps_watch_has_no_history_for_it_but_the_operator_sees_it(
    db: Database, client_id: str
) -> None:
    [watch_id] = await register(db, client_id, 1)
    other = await other_app(db)

    assert await watch_queries.history(db, client_id=other, watch_id=watch_id) is None
    seen = await watch_queries.history(db, client_id=None, watch_id=watch_id)
    assert seen is not None and seen.watch.client_id == client_id


async def other_app(db: Database) -> str:
    apps = client_apps.ClientApps(db, key_box=KeyBox.from_config(ENCRYPTION_KEY), secret_overlap=0)
    return (await apps.create("other")).client.id


def newest_first(*ids: str) -> list[str]:
    """Ids order watches by creation to the millisecond; within one, by chance."""
    return sorted(ids, reverse=True)


async def ids_of(
    db: Database, client_id: str | None, matching: watch_queries.WatchFilter | None = None
) -> list[str]:
    found = await watch_queries.page(
        db, client_id=client_id, limit=100, matching=matching or watch_queries.WatchFilter()
    )
    return [watch.id for watch in found]


async def test_a_page_narrows_by_state_task_status_final_event_and_task_id_prefix(
    db: Database, client_id: str
) -> None:
    first, second, third = await register(db, client_id, 3)
    claimed = {watch.id: watch for watch in await claim_watches(db, "own_poller")}
    failed_task = parse_snapshot({"task_id": "t", "status": "failed", "error": "no"})
    results: list[PollResult] = [
        AT_ONCE.after_snapshot(claimed[first], ENDED, datetime.now(UTC)),
        AT_ONCE.after_snapshot(claimed[second], failed_task, datetime.now(UTC)),
        AT_ONCE.after_snapshot(claimed[third], running(5), datetime.now(UTC)),
    ]
    await polls.record_polls(db, owner="own_poller", results=results)

    assert await ids_of(db, client_id) == newest_first(first, second, third)
    assert await ids_of(db, client_id, Filter(state=WatchState.NOTIFYING)) == newest_first(
        first, second
    )
    assert await ids_of(db, client_id, Filter(task_status="in_progress")) == [third]
    assert await ids_of(db, client_id, Filter(event_type="task.failed")) == [second]
    assert await ids_of(db, client_id, Filter(event_type="watch.expired")) == []
    assert await ids_of(db, client_id, Filter(task_id_prefix=claimed[second].task_id)) == [second]
    assert await ids_of(db, client_id, Filter(task_id_prefix="video_")) == newest_first(
        first, second, third
    )


async def test_a_task_id_prefix_is_matched_literally_not_as_a_pattern(
    db: Database, client_id: str
) -> None:
    await register(db, client_id, 2)

    assert await ids_of(db, client_id, Filter(task_id_prefix="%")) == []
    assert await ids_of(db, client_id, Filter(task_id_prefix="video%")) == []
    assert await ids_of(db, client_id, Filter(task_id_prefix="v_deo")) == []
    assert await ids_of(db, client_id, Filter(task_id_prefix="VIDEO_")) == []


async def test_a_task_id_prefix_may_end_in_any_character(db: Database, client_id: str) -> None:
    registry = registrations.Registrations(db, poll_interval=0)
    ids = {}
    for task_id in ["vidéo_1", "vidéo_\U0010ffff1", "vidéo_\U0010ffff", "vidéo~", "vidéo"]:
        watch, _ = await registry.register(
            client_id=client_id,
            task_id=task_id,
            callback_url="https://receiver.test/hooks",
            metadata=None,
            expires_after=3600,
        )
        ids[task_id] = watch.id

    def found(*task_ids: str) -> list[str]:
        return newest_first(*(ids[task_id] for task_id in task_ids))

    assert await ids_of(db, client_id, Filter(task_id_prefix="vidéo_")) == found(
        "vidéo_1", "vidéo_\U0010ffff1", "vidéo_\U0010ffff"
    )
    assert await ids_of(db, client_id, Filter(task_id_prefix="vidéo_\U0010ffff")) == found(
        "vidéo_\U0010ffff1", "vidéo_\U0010ffff"
    )
    assert await ids_of(db, client_id, Filter(task_id_prefix="vidé")) == found(*ids)


async def test_a_page_narrows_by_creation_time(db: Database, client_id: str) -> None:
    [older] = await register(db, client_id, 1)
    await asyncio.sleep(0.02)
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.02)
    [newer] = await register(db, client_id, 1)

    assert await ids_of(db, client_id, Filter(created_after=boundary)) == [newer]
    assert await ids_of(db, client_id, Filter(created_before=boundary)) == [older]
    hour_ago = boundary - timedelta(hours=1)
    assert await ids_of(db, client_id, Filter(created_before=hour_ago)) == []


async def test_the_operators_page_holds_every_apps_watches_and_an_apps_only_its_own(
    db: Database, client_id: str
) -> None:
    [mine] = await register(db, client_id, 1)
    other = await other_app(db)
    [theirs] = await register(db, other, 1)

    assert await ids_of(db, None) == newest_first(mine, theirs)
    assert await ids_of(db, client_id) == [mine]
    assert await ids_of(db, other) == [theirs]


async def test_a_poll_of_an_answer_that_had_nul_in_it_is_written_back_with_its_batch(
    db: Database, client_id: str
) -> None:
    await register(db, client_id, 2)
    odd, plain = await claim_watches(db, "own_poller")
    snapshot = parse_snapshot({"task_id": "t", "status": "running\u0000", "progress": 5})
    results = [
        AT_ONCE.after_snapshot(odd, snapshot, datetime.now(UTC)),
        AT_ONCE.after_snapshot(plain, running(5), datetime.now(UTC)),
    ]

    await polls.record_polls(db, owner="own_poller", results=results)

    history = await watch_queries.history(db, client_id=client_id, watch_id=odd.id)
    assert history is not None
    assert history.watch.upstream_status == "running\ufffd"
    assert await count_changes(db) == 2
