"""The lease guarantees, on the store's own queries: a claimed row is one owner's at a time, a
write-back counts only while its owner still holds the row, and a released lease frees the row
at once. Each test reads the rows back from the database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.engine import make_url

from app.delivery import webhooks
from app.polling.policy import PollPolicy
from app.states import EventState, WatchState
from app.store import captures, outbox, polls, registrations, watch_queries
from app.store.database import Database
from app.store.leases import release_leases
from app.store.tables import attempts, events, watches
from app.store.tables import captures as captures_table
from app.upstream import UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import parse_snapshot
from app.work import AttemptResult, DueEvent, DueWatch, Outcome, PollResult

POLICY = PollPolicy(interval=5, backoff_max=60, not_found_grace=60)
RUNNING = parse_snapshot({"task_id": "t", "status": "in_progress", "progress": 40})
ENDED = parse_snapshot({"task_id": "t", "status": "succeeded", "video_url": "https://x.test/v"})
BROKEN = UpstreamError(UpstreamErrorKind.SERVER_ERROR, "bad gateway", 502)
#: A lease short enough to lapse within a test, and the wait that sees it lapsed.
SHORT_LEASE = 0.3
LAPSE = 0.5
#: A lease that outlives any test.
LONG_LEASE = 300.0

Row = dict[str, Any]

_tasks = itertools.count()


async def register(
    db: Database, client_id: str, count: int, *, event_types: list[str] | None = None
) -> list[str]:
    """`count` new watches, due for a poll at once; their ids in order of registration."""
    registry = registrations.Registrations(db, poll_interval=0)
    ids = []
    for _ in range(count):
        watch, created = await registry.register(
            client_id=client_id,
            task_id=f"video_{next(_tasks)}",
            callback_url="https://receiver.test/hooks",
            metadata=None,
            expires_after=3600,
            event_types=event_types,
        )
        assert created
        ids.append(watch.id)
    return ids


async def pending_events(db: Database, client_id: str, count: int) -> list[str]:
    """`count` watches whose tasks ended, each with its final webhook due in the outbox; the
    ids of those webhooks."""
    ids = await register(db, client_id, count)
    due = await polls.claim_due_watches(db, owner="own_poller", lease=LONG_LEASE, limit=count)
    assert {watch.id for watch in due} == set(ids)
    moved = await polls.record_polls(
        db, owner="own_poller", results=[ended(watch) for watch in due]
    )
    assert sorted(moved) == sorted(ids)
    written = await events_of(db, ids)
    assert {row["state"] for row in written} == {EventState.PENDING}
    assert len(written) == count
    return [row["id"] for row in written]


async def claim_watches(
    db: Database, owner: str, *, lease: float = LONG_LEASE, limit: int = 10
) -> list[DueWatch]:
    return await polls.claim_due_watches(db, owner=owner, lease=lease, limit=limit)


async def claim_events(
    db: Database, owner: str, *, lease: float = LONG_LEASE, limit: int = 10
) -> list[DueEvent]:
    return (await outbox.claim_due_events(db, owner=owner, lease=lease, limit=limit)).events


def ended(watch: DueWatch) -> PollResult:
    return POLICY.after_snapshot(watch, ENDED, datetime.now(UTC))


def running(watch: DueWatch) -> PollResult:
    return POLICY.after_snapshot(watch, RUNNING, datetime.now(UTC))


def failed(watch: DueWatch) -> PollResult:
    return POLICY.after_error(watch, BROKEN, str(BROKEN), datetime.now(UTC))


def delivered(event: DueEvent) -> Outcome:
    result = AttemptResult(
        attempted_at=datetime.now(UTC),
        duration_ms=3,
        status_code=204,
        error=None,
        response_excerpt="",
    )
    return Outcome(event, result, retry_at=None)


async def rows(db: Database, table: Table, ids: Sequence[str]) -> dict[str, Row]:
    """The rows `ids` of `table`, every column, by id."""

    def read(conn: Connection) -> dict[str, Row]:
        found = conn.execute(select(table).where(table.c.id.in_(ids)))
        return {row.id: dict(row._mapping) for row in found}

    return await db.run(read)


async def events_of(db: Database, watch_ids: Sequence[str]) -> list[Row]:
    def read(conn: Connection) -> list[Row]:
        found = conn.execute(select(events).where(events.c.watch_id.in_(watch_ids)))
        return [dict(row._mapping) for row in found]

    return await db.run(read)


async def attempts_of(db: Database, event_id: str) -> int:
    def count(conn: Connection) -> int:
        query = select(func.count()).select_from(attempts).where(attempts.c.event_id == event_id)
        return int(conn.execute(query).scalar_one())

    return await db.run(count)


async def test_a_watch_cancelled_between_its_claim_and_its_write_back_gets_no_event(
    db: Database, client_id: str
) -> None:
    ending, still_running = await register(db, client_id, 2)
    due = await claim_watches(db, "own_a")
    assert {watch.id for watch in due} == {ending, still_running}

    for watch_id in (ending, still_running):
        cancelled = await watch_queries.cancel(db, client_id=client_id, watch_id=watch_id)
        assert cancelled is not None and cancelled.state == WatchState.CANCELLED
    before = await rows(db, watches, [ending, still_running])
    by_id = {watch.id: watch for watch in due}

    created = await polls.record_polls(
        db, owner="own_a", results=[ended(by_id[ending]), running(by_id[still_running])]
    )

    assert created == []
    assert await events_of(db, [ending, still_running]) == []
    after = await rows(db, watches, [ending, still_running])
    assert after == before
    assert {row["state"] for row in after.values()} == {WatchState.CANCELLED}
    assert {row["poll_count"] for row in after.values()} == {0}
    assert await claim_watches(db, "own_b") == []


async def test_a_lapsed_watch_goes_to_another_owner_and_the_late_write_back_is_dropped(
    db: Database, client_id: str
) -> None:
    ending, still_running, failing = await register(db, client_id, 3)
    [changing] = await register(db, client_id, 1, event_types=[webhooks.UPDATED])
    ids = [ending, still_running, failing, changing]
    first = await claim_watches(db, "own_a", lease=SHORT_LEASE)
    assert {watch.id for watch in first} == set(ids)
    assert await claim_watches(db, "own_b") == []

    await asyncio.sleep(LAPSE)
    second = await claim_watches(db, "own_b")
    assert {watch.id for watch in second} == set(ids)
    reclaimed = await rows(db, watches, ids)
    assert {row["lease_owner"] for row in reclaimed.values()} == {"own_b"}

    def results(claimed: list[DueWatch]) -> list[PollResult]:
        by_id = {watch.id: watch for watch in claimed}
        return [
            ended(by_id[ending]),
            running(by_id[still_running]),
            failed(by_id[failing]),
            running(by_id[changing]),  # a `task.updated` for a watch that asked for them
        ]

    late = await polls.record_polls(db, owner="own_a", results=results(first))

    assert late == []
    assert await events_of(db, ids) == []
    assert await rows(db, watches, ids) == reclaimed

    created = await polls.record_polls(db, owner="own_b", results=results(second))

    assert sorted(created) == sorted([ending, changing])
    written = {row["watch_id"]: row for row in await events_of(db, ids)}
    assert set(written) == {ending, changing}
    assert written[ending]["type"] == webhooks.SUCCEEDED
    assert written[changing]["type"] == webhooks.UPDATED
    after = await rows(db, watches, ids)
    assert after[ending]["state"] == WatchState.NOTIFYING
    assert after[still_running]["task_status"] == "in_progress"
    assert after[failing]["consecutive_errors"] == 1
    assert after[changing]["event_seq"] == 1
    assert {row["poll_count"] for row in after.values()} == {1}
    assert {row["lease_owner"] for row in after.values()} == {None}


async def test_a_lapsed_event_goes_to_another_owner_and_the_late_attempt_moves_nothing(
    db: Database, client_id: str
) -> None:
    [event_id] = await pending_events(db, client_id, 1)
    first = await claim_events(db, "own_a", lease=SHORT_LEASE)
    assert [event.id for event in first] == [event_id]
    assert await claim_events(db, "own_b") == []

    await asyncio.sleep(LAPSE)
    second = await claim_events(db, "own_b")
    assert [event.id for event in second] == [event_id]
    reclaimed = await rows(db, events, [event_id])
    watch_id = reclaimed[event_id]["watch_id"]
    watch_before = await rows(db, watches, [watch_id])
    assert reclaimed[event_id]["lease_owner"] == "own_b"

    await outbox.record_attempts(db, owner="own_a", outcomes=[delivered(first[0])])

    # The late request did go out, so the log keeps it; but it moves neither event nor watch.
    assert await attempts_of(db, event_id) == 1
    assert await rows(db, events, [event_id]) == reclaimed
    assert reclaimed[event_id]["state"] == EventState.PENDING
    assert reclaimed[event_id]["attempts"] == 0
    assert await rows(db, watches, [watch_id]) == watch_before
    assert watch_before[watch_id]["state"] == WatchState.NOTIFYING

    await outbox.record_attempts(db, owner="own_b", outcomes=[delivered(second[0])])

    event = (await rows(db, events, [event_id]))[event_id]
    assert event["state"] == EventState.DELIVERED
    assert event["attempts"] == 1
    assert event["lease_owner"] is None
    assert await attempts_of(db, event_id) == 2
    assert (await rows(db, watches, [watch_id]))[watch_id]["state"] == WatchState.COMPLETED


async def test_released_leases_can_be_claimed_by_another_owner_at_once_and_others_stay_leased(
    db: Database, client_id: str
) -> None:
    await pending_events(db, client_id, 4)
    await register(db, client_id, 4)
    a_watches = await claim_watches(db, "own_a", limit=2)
    c_watches = await claim_watches(db, "own_c", limit=2)
    a_events = await claim_events(db, "own_a", limit=2)
    c_events = await claim_events(db, "own_c", limit=2)
    a_watch_ids = {watch.id for watch in a_watches}
    c_watch_ids = sorted(watch.id for watch in c_watches)
    a_event_ids = {event.id for event in a_events}
    c_event_ids = sorted(event.id for event in c_events)
    assert len(a_watch_ids) == len(c_watch_ids) == len(a_event_ids) == len(c_event_ids) == 2
    others_before = (await rows(db, watches, c_watch_ids), await rows(db, events, c_event_ids))
    assert await claim_watches(db, "own_b") == []
    assert await claim_events(db, "own_b") == []

    await release_leases(db, owner="own_a")

    released = {
        **await rows(db, watches, sorted(a_watch_ids)),
        **await rows(db, events, sorted(a_event_ids)),
    }
    assert {(row["lease_owner"], row["lease_expires_at"]) for row in released.values()} == {
        (None, None)
    }
    taken_watches = await claim_watches(db, "own_b")
    taken_events = await claim_events(db, "own_b")
    assert {watch.id for watch in taken_watches} == a_watch_ids
    assert {event.id for event in taken_events} == a_event_ids
    others_after = (await rows(db, watches, c_watch_ids), await rows(db, events, c_event_ids))
    assert others_after == others_before
    assert {row["lease_owner"] for table in others_after for row in table.values()} == {"own_c"}


async def test_a_delivery_claimed_by_two_owners_in_turn_is_sent_once(
    db: Database, client_id: str
) -> None:
    [event_id] = await pending_events(db, client_id, 1)
    first = await claim_events(db, "own_a")
    assert [event.id for event in first] == [event_id]
    assert await claim_events(db, "own_b") == []

    await outbox.record_attempts(db, owner="own_a", outcomes=[delivered(first[0])])
    second = await outbox.claim_due_events(db, owner="own_b", lease=LONG_LEASE, limit=10)

    assert second.events == []
    assert second.next_due_at is None
    assert await attempts_of(db, event_id) == 1
    event = (await rows(db, events, [event_id]))[event_id]
    assert (event["state"], event["attempts"], event["lease_owner"]) == (
        EventState.DELIVERED,
        1,
        None,
    )
    watch = (await rows(db, watches, [event["watch_id"]]))[event["watch_id"]]
    assert watch["state"] == WatchState.COMPLETED


async def test_back_to_back_claims_by_different_owners_get_disjoint_rows(
    db: Database, client_id: str
) -> None:
    event_ids = await pending_events(db, client_id, 10)
    watch_ids = await register(db, client_id, 10)

    a_watches = {w.id for w in await claim_watches(db, "own_a", limit=6)}
    b_watches = {w.id for w in await claim_watches(db, "own_b")}
    a_events = {e.id for e in await claim_events(db, "own_a", limit=6)}
    b_events = {e.id for e in await claim_events(db, "own_b")}

    assert (len(a_watches), len(b_watches)) == (6, 4)
    assert a_watches.isdisjoint(b_watches) and a_watches | b_watches == set(watch_ids)
    assert (len(a_events), len(b_events)) == (6, 4)
    assert a_events.isdisjoint(b_events) and a_events | b_events == set(event_ids)
    leased = {**await rows(db, watches, watch_ids), **await rows(db, events, event_ids)}
    for owner, claimed in (("own_a", a_watches | a_events), ("own_b", b_watches | b_events)):
        assert {leased[row_id]["lease_owner"] for row_id in claimed} == {owner}
    assert await claim_watches(db, "own_c") == []
    assert await claim_events(db, "own_c") == []


async def test_concurrent_claims_by_many_owners_never_share_a_row(
    db: Database, client_id: str
) -> None:
    """On PostgreSQL the claims run at once, on connections of their own (`SKIP LOCKED`)."""
    watch_ids = await register(db, client_id, 20)
    owners = [f"own_{n}" for n in range(5)]

    claims = await asyncio.gather(
        *(polls.claim_due_watches(db, owner=owner, lease=60, limit=5) for owner in owners)
    )

    claimed = [watch.id for claim in claims for watch in claim]
    assert sorted(claimed) == sorted(watch_ids), "every watch claimed, none twice"
    assert all(len(claim) <= 5 for claim in claims)
    leased = await rows(db, watches, watch_ids)
    for owner, claim in zip(owners, claims, strict=True):
        assert all(leased[watch.id]["lease_owner"] == owner for watch in claim)


async def test_a_renewed_capture_stays_its_owners_past_its_first_lease_and_a_lapsed_one_moves_on(
    db: Database, client_id: str
) -> None:
    """Downloads can outlast a capture's lease: the owner renews what it is still downloading,
    and only that. Renewing cannot take back a capture that lapsed to another owner."""
    ids = await register(db, client_id, 3)
    due = await claim_watches(db, "own_poller")
    await polls.record_polls(
        db, owner="own_poller", results=[ended(watch) for watch in due], capture_timeout=3600
    )
    first = await captures.claim_due_captures(db, owner="own_a", lease=SHORT_LEASE, limit=10)
    assert {capture.id for capture in first} == set(ids)

    await asyncio.sleep(LAPSE)
    [taken_over] = await captures.claim_due_captures(db, owner="own_b", lease=LONG_LEASE, limit=1)
    downloading, abandoned = (capture_id for capture_id in ids if capture_id != taken_over.id)
    await captures.renew_leases(
        db, owner="own_a", ids=[downloading, taken_over.id], lease=LONG_LEASE
    )
    await asyncio.sleep(LAPSE)
    left = await captures.claim_due_captures(db, owner="own_c", lease=LONG_LEASE, limit=10)

    assert [capture.id for capture in left] == [abandoned]
    after = await rows(db, captures_table, ids)
    assert after[downloading]["lease_owner"] == "own_a"
    assert after[taken_over.id]["lease_owner"] == "own_b"


async def test_a_renewed_poll_stays_its_owners_past_its_first_lease_and_a_lapsed_one_moves_on(
    db: Database, client_id: str
) -> None:
    """An upstream request (or a wait for the rate budget) can outlast a poll's short lease."""
    ids = await register(db, client_id, 3)
    first = await claim_watches(db, "own_a", lease=SHORT_LEASE)
    assert {watch.id for watch in first} == set(ids)

    await asyncio.sleep(LAPSE)
    [taken_over] = await claim_watches(db, "own_b", limit=1)
    polling, abandoned = (watch_id for watch_id in ids if watch_id != taken_over.id)
    await polls.renew_leases(db, owner="own_a", ids=[polling, taken_over.id], lease=LONG_LEASE)
    await asyncio.sleep(LAPSE)
    left = await claim_watches(db, "own_c")

    assert [watch.id for watch in left] == [abandoned]
    after = await rows(db, watches, ids)
    assert after[polling]["lease_owner"] == "own_a"
    assert after[taken_over.id]["lease_owner"] == "own_b"


async def test_renewing_skips_a_row_another_transaction_holds_instead_of_waiting_for_it(
    db: Database, client_id: str, database_url: str
) -> None:
    """A poll's write-back and the renewal of the polls still in flight can meet on the same
    rows, each taking them in its own order; had the renewal waited, the two could deadlock
    (they did, on PostgreSQL under load). The write-back ends that lease anyway."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("SQLite runs one transaction at a time: no row is ever held by another")
    writing_back, polling = await register(db, client_id, 2)
    await claim_watches(db, "own_a", lease=SHORT_LEASE)
    other = await asyncpg.connect(
        make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        async with other.transaction():
            await other.execute("SELECT id FROM watches WHERE id = $1 FOR UPDATE", writing_back)
            await asyncio.wait_for(
                polls.renew_leases(
                    db, owner="own_a", ids=[writing_back, polling], lease=LONG_LEASE
                ),
                timeout=5,
            )
    finally:
        await other.close()
    await asyncio.sleep(LAPSE)

    assert [watch.id for watch in await claim_watches(db, "own_b")] == [writing_back]
