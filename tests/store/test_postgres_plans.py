"""On PostgreSQL, a claim of due webhooks costs what it claims, whatever the planner believes.

The relay prepares its statements, and after five runs PostgreSQL may keep a generic plan, made
from the statistics of the moment. A relay started on a new database plans its claims while the
`events` table is empty; with autovacuum off, or before it has analyzed the table, that plan is
kept when thousands of webhooks are pending. The claim then read every pending event for each one
it considered: 27 s for one claim in a backlog of 8,000 (docs/performance.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.delivery import webhooks
from app.polling.policy import PollPolicy
from app.store import captures, outbox, polls
from app.store.database import Database
from app.upstream.snapshot import parse_snapshot
from app.work import AttemptResult, CaptureOutcome, Outcome
from tests.store.statements import Executed, recorded

OWNER = "own_plans"
POLICY = PollPolicy(interval=5, backoff_max=60, not_found_grace=60)
#: Rows due (events, watches, captures) among which the plans are run.
PENDING = 3_000
#: Rows a claim asks for.
LIMIT = 25
#: Rows a claim may read per pending event, planned without statistics: the event, and the first
#: pending event of its watch (never every pending event again for each one).
ROWS_PER_PENDING_EVENT = 3
#: Rows a claim may read per row it considers, planned with statistics (for an event: the event,
#: the first pending event of its watch, and the event again to lease it).
ROWS_PER_CONSIDERED_ROW = 3
#: Rows a write-back by id may read: its own, found by the primary key.
ROWS_PER_WRITE_BACK = 2
#: What reads a table's rows, in a plan.
SCANS = frozenset({"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"})

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def server(db: Database, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A session of its own on the migrated database, as a replica's would be."""
    url = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        yield connection
    finally:
        await connection.close()


async def add_watches(
    connection: asyncpg.Connection, client_id: str, count: int, *, state: str, prefix: str = "w"
) -> None:
    """`count` watches in `state`, due for a poll a second ago."""
    await connection.execute(
        """
        INSERT INTO watches (id, client_id, task_id, callback_url, event_seq, state, poll_count,
                             next_poll_at, created_at, updated_at, deadline_at)
        SELECT $3 || '_' || n, $1, $3 || '_video_' || n, 'https://receiver.test/hooks', 1, $4,
               1, now() - interval '1 second', now(), now(), now() + interval '1 hour'
        FROM generate_series(1, $2) AS n
        """,
        client_id,
        count,
        prefix,
        state,
    )


async def add_pending_events(connection: asyncpg.Connection, client_id: str, count: int) -> None:
    """`count` watches whose task has ended, each with its final webhook due and never tried."""
    await add_watches(connection, client_id, count, state="notifying")
    await connection.execute(
        """
        INSERT INTO events (id, watch_id, client_id, seq, type, callback_url, payload, state,
                            attempts, round_start, next_attempt_at, created_at)
        SELECT 'ev_' || n, 'w_' || n, $1, 1, 'task.succeeded', 'https://receiver.test/hooks',
               '{}', 'pending', 0, 0, now() - interval '1 second', now()
        FROM generate_series(1, $2) AS n
        """,
        client_id,
        count,
    )


async def add_pending_captures(
    connection: asyncpg.Connection, client_id: str, count: int, *, prefix: str = "w"
) -> None:
    """`count` watches whose task succeeded, each with its result due to be captured."""
    await add_watches(connection, client_id, count, state="capturing", prefix=prefix)
    await connection.execute(
        """
        INSERT INTO captures (id, client_id, state, source_url, attempts, next_attempt_at,
                              deadline_at, created_at, updated_at)
        SELECT $3 || '_' || n, $1, 'pending', 'https://files.test/video.mp4', 0,
               now() - interval '1 second', now() + interval '1 hour', now(), now()
        FROM generate_series(1, $2) AS n
        """,
        client_id,
        count,
        prefix,
    )


async def fresh_claim(db: Database) -> tuple[str, Any]:
    """The statement that claims webhooks never tried yet, as the store sends it."""
    with recorded() as executed:
        await outbox.claim_due_events(db, owner=OWNER, lease=30, limit=LIMIT)
    return executed[0]


@dataclass(frozen=True)
class PreparedStatement:
    """A statement prepared on a session, in the plan PostgreSQL keeps for it: the generic plan,
    which it comes to after five runs (forced here), made from the tables as they were then."""

    connection: asyncpg.Connection
    name: str
    #: EXECUTE takes no bound parameters: each argument is written out, as a literal.
    arguments: str

    @classmethod
    async def run_once(
        cls, connection: asyncpg.Connection, name: str, statement: str, parameters: Any
    ) -> PreparedStatement:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE {name} AS {statement}")
        literals = [
            await connection.fetchval("SELECT quote_nullable($1::text)", _text(value))
            for value in parameters
        ]
        prepared = cls(connection, name, ", ".join(literals))
        await connection.execute(f"EXECUTE {name}({prepared.arguments})")
        return prepared

    async def run_again(self) -> dict[str, Any]:
        """Run it again in the plan it was given: the plan, with what each step read."""
        found = await self.connection.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {self.name}({self.arguments})"
        )
        plan: dict[str, Any] = json.loads(found)[0]["Plan"]
        return plan


async def prepare_each(
    connection: asyncpg.Connection, executed: Executed
) -> list[PreparedStatement]:
    """Every statement recorded, prepared and run once (`PreparedStatement.run_once`)."""
    return [
        await PreparedStatement.run_once(connection, f"write_back_{n}", statement, parameters)
        for n, (statement, parameters) in enumerate(executed)
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def assert_reads_at_most(plan: dict[str, Any], rows: float) -> None:
    assert rows_read(plan) <= rows, json.dumps(plan, indent=1)


async def assert_each_reads_only_its_rows(write_backs: list[PreparedStatement]) -> None:
    """Run again among the due rows, each write-back reads the row it names (and its watch's)."""
    for write_back in write_backs:
        assert_reads_at_most(await write_back.run_again(), ROWS_PER_WRITE_BACK)


def rows_read(plan: dict[str, Any]) -> float:
    """Rows the scans of `plan` and of its subplans read, kept or filtered out, in all their
    loops (a count that does not depend on how the rows lie on pages, as buffers do)."""
    read = sum(rows_read(step) for step in plan.get("Plans", ()))
    if plan["Node Type"] in SCANS:
        per_loop = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += per_loop * plan["Actual Loops"]
    return read


async def test_a_claim_planned_on_an_empty_table_reads_each_pending_event_at_most_once(
    db: Database, server: asyncpg.Connection, client_id: str
) -> None:
    claim = await PreparedStatement.run_once(server, "claim", *await fresh_claim(db))
    await add_pending_events(server, client_id, PENDING)

    plan = await claim.run_again()

    assert plan["Actual Rows"] == LIMIT
    assert_reads_at_most(plan, ROWS_PER_PENDING_EVENT * PENDING)


async def test_a_claim_planned_with_statistics_reads_only_about_what_it_claims(
    db: Database, server: asyncpg.Connection, client_id: str
) -> None:
    await add_pending_events(server, client_id, PENDING)
    await server.execute("ANALYZE")
    claim = await PreparedStatement.run_once(server, "claim", *await fresh_claim(db))

    plan = await claim.run_again()

    assert plan["Actual Rows"] == LIMIT
    # It considers the events it claims, and steps over those the first run leased.
    considered = 2 * LIMIT
    assert_reads_at_most(plan, ROWS_PER_CONSIDERED_ROW * considered)


async def test_the_write_backs_of_an_attempt_planned_on_an_empty_table_read_only_their_rows(
    db: Database, server: asyncpg.Connection, client_id: str
) -> None:
    """Each write-back names its event (and its watch) by id; planned with no statistics, one
    once took an index of pending events by state instead, and read them all for each event."""
    await add_pending_events(server, client_id, 1)
    [event] = (await outbox.claim_due_events(db, owner=OWNER, lease=30, limit=1)).events
    delivered = AttemptResult(datetime.now(UTC), 5, 204, None, "")
    with recorded() as executed:
        await outbox.record_attempts(
            db, owner=OWNER, outcomes=[Outcome(event, delivered, retry_at=None)]
        )
    write_backs = await prepare_each(server, executed)
    await server.execute("DELETE FROM attempts; DELETE FROM events; DELETE FROM watches")
    await add_pending_events(server, client_id, PENDING)

    await assert_each_reads_only_its_rows(write_backs)


async def test_a_poll_planned_on_an_empty_table_reads_only_the_watches_it_claims_and_writes(
    db: Database, server: asyncpg.Connection, client_id: str
) -> None:
    """A relay on a new database polls its first watches at once: the plans of its claim and
    write-backs are made then, with a handful of watches, and kept when there are thousands."""
    await add_watches(server, client_id, 1, state="active", prefix="first")
    with recorded() as claimed:
        [watch] = await polls.claim_due_watches(db, owner=OWNER, lease=30, limit=LIMIT)
    running = parse_snapshot({"task_id": watch.task_id, "status": "in_progress", "progress": 40})
    with recorded() as written:
        await polls.record_polls(
            db, owner=OWNER, results=[POLICY.after_snapshot(watch, running, datetime.now(UTC))]
        )
    claim = await PreparedStatement.run_once(server, "claim", *claimed[0])
    write_backs = await prepare_each(server, written)
    await add_watches(server, client_id, PENDING, state="active")

    plan = await claim.run_again()
    assert plan["Actual Rows"] == LIMIT
    assert_reads_at_most(plan, ROWS_PER_CONSIDERED_ROW * LIMIT)
    await assert_each_reads_only_its_rows(write_backs)


async def test_a_capture_planned_on_an_empty_table_reads_only_the_captures_it_claims_and_writes(
    db: Database, server: asyncpg.Connection, client_id: str
) -> None:
    await add_pending_captures(server, client_id, 1, prefix="first")
    with recorded() as claimed:
        [capture] = await captures.claim_due_captures(db, owner=OWNER, lease=30, limit=LIMIT)
    failed = webhooks.CaptureError("download_failed", "HTTP 503")
    retry_at = datetime.now(UTC) + timedelta(seconds=5)
    with recorded() as written:
        await captures.record_captures(
            db, owner=OWNER, outcomes=[CaptureOutcome(capture, None, failed, retry_at, None)]
        )
    claim = await PreparedStatement.run_once(server, "claim", *claimed[0])
    [write_back] = await prepare_each(server, written)
    await add_pending_captures(server, client_id, PENDING)

    plan = await claim.run_again()
    assert plan["Actual Rows"] == LIMIT
    assert_reads_at_most(plan, ROWS_PER_CONSIDERED_ROW * LIMIT)
    await assert_each_reads_only_its_rows([write_back])
