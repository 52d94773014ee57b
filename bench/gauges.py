"""`python -m bench.gauges [--live N] [--ended N] [--database-url URL]`: what one read of the
`/metrics` gauges of the work in progress costs, beside a long history of ended watches.

The database is filled directly (no relay runs): `--live` watches, half of them due for a poll
and a tenth of them with a webhook pending, and `--ended` completed watches with their delivered
webhooks. The gauges are then read `--reads` times; the figures are milliseconds per read.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert

from app.states import EventState, WatchState
from app.store import gauges
from app.store.database import Database, migrate, open_database
from app.store.tables import clients, events, watches

BATCH = 10_000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gauges", description=__doc__)
    parser.add_argument("--live", type=int, default=10_000, help="live watches (default 10000)")
    parser.add_argument("--ended", type=int, default=1_000_000, help="ended watches (1000000)")
    parser.add_argument("--reads", type=int, default=50, help="reads timed (default 50)")
    parser.add_argument(
        "--database-url", help="an empty database to fill (default: a new SQLite file)"
    )
    return parser.parse_args(argv)


def watch_row(n: int, state: WatchState, now: datetime) -> dict[str, Any]:
    due = now - timedelta(seconds=1) if n % 2 else now + timedelta(seconds=5)
    return {
        "id": f"wat_{n:028x}",
        "client_id": "cli_bench",
        "task_id": f"video_{n}",
        "callback_url": "https://receiver.test/hooks",
        "state": state,
        "next_poll_at": due if state == WatchState.ACTIVE else None,
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(days=1),
    }


def event_row(n: int, state: EventState, now: datetime) -> dict[str, Any]:
    return {
        "id": f"msg_{n:032x}",
        "watch_id": f"wat_{n:028x}",
        "client_id": "cli_bench",
        "type": "task.succeeded",
        "callback_url": "https://receiver.test/hooks",
        "payload": "{}",
        "state": state,
        "next_attempt_at": now if state == EventState.PENDING else None,
        "created_at": now,
    }


async def fill(db: Database, *, live: int, ended: int) -> None:
    now = datetime.now(UTC)
    await db.run(
        lambda conn: conn.execute(
            insert(clients),
            {
                "id": "cli_bench",
                "name": "bench",
                "api_key_hash": "0" * 64,
                "signing_secret": "-",
                "created_at": now,
            },
        )
    )
    for start in range(0, live + ended, BATCH):
        numbers = range(start, min(start + BATCH, live + ended))
        rows = [
            watch_row(n, WatchState.ACTIVE if n < live else WatchState.COMPLETED, now)
            for n in numbers
        ]
        sent = [
            event_row(n, EventState.PENDING if n < live else EventState.DELIVERED, now)
            for n in numbers
            if n >= live or n % 10 == 0
        ]
        await db.run(functools.partial(_insert, watch_rows=rows, event_rows=sent))


def _insert(
    conn: Connection, *, watch_rows: list[dict[str, Any]], event_rows: list[dict[str, Any]]
) -> None:
    conn.execute(insert(watches), watch_rows)
    if event_rows:
        conn.execute(insert(events), event_rows)


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'gauges.db'}"
        db = open_database(url)
        try:
            await migrate(db)
            started = time.perf_counter()
            await fill(db, live=args.live, ended=args.ended)
            print(
                f"filled in {time.perf_counter() - started:.0f} s: {args.live} live watches, "
                f"{args.ended} ended, on {url.split(':', 1)[0]}"
            )
            timings = []
            for _ in range(args.reads):
                started = time.perf_counter()
                work = await gauges.work_in_progress(db)
                timings.append((time.perf_counter() - started) * 1000)
        finally:
            await db.dispose()
    print(f"read: {work}")
    print(
        f"ms per read over {args.reads}: median {statistics.median(timings):.2f}, "
        f"max {max(timings):.2f}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(measure(parse_args(argv)))


if __name__ == "__main__":
    main()
