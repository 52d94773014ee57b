"""`--prune-day N`: what retention costs. N finished watches whose `RELAY_RETENTION` (30 days)
has just run out, a day of them, are written into the relay's file before it starts, beside
`--seed-finished` more that are to stay; the relay then runs idle, and its pruning job, first
run a minute after the start, deletes the day's worth and gives the space back.

The job's CPU is the relay's CPU while it runs (every thread: the checkpoints of what it wrote
included), less what the idle relay used in as long before it (its ticks). Spread over a day,
that is the share of a core pruning takes from a relay serving N tasks a day.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.store.tables import FINISHED
from bench import seed
from bench.results import MB
from bench.servers import Server

if TYPE_CHECKING:
    from bench.scenario import Run

#: The relay's default `RELAY_RETENTION`, which the run leaves as it is.
RETENTION = timedelta(days=30)
DAY = timedelta(days=1)
#: How long to wait for the pruning job to begin and then to end.
WAIT = 600.0
#: The target: pruning a day's worth costs less than this share of a core.
TARGET_SHARE = 0.05
#: The finished watches, as the relay's partial index has them (`app.store.tables.FINISHED`).
_FINISHED = FINISHED.text


async def execute(run: Run) -> None:
    config = run.config
    count = config.prune_day or 0
    upstream, _ = await run.start_harness()
    client_id = await run.default_client()
    now = datetime.now(UTC)
    # The oldest end the day's worth reaches: the cutoff the relay will prune up to.
    cutoff = now - RETENTION
    took = await asyncio.to_thread(
        seed.seed_finished,
        run.database,
        client_id=client_id,
        count=count,
        newest=cutoff - timedelta(minutes=1),
        oldest=cutoff - DAY,
    )
    if config.seed_finished:
        took += await asyncio.to_thread(
            seed.seed_finished,
            run.database,
            client_id=client_id,
            count=config.seed_finished,
            newest=now - timedelta(minutes=1),
            oldest=cutoff + timedelta(hours=1),
            first=count,
        )
    before = _sizes(run)
    print(
        f"\n== Pruning a day's worth: {count:,} watches past their retention, beside "
        f"{config.seed_finished:,} to keep, written in {took:.0f} s; the file is {before}"
    )
    relay = run.start_relay(upstream)
    await relay.wait_ready()
    watching = _Watcher(run, cutoff)
    idle_from = await _cpu_at(relay)
    first = watching.oldest()
    # The oldest go first: pruning has begun once the oldest is gone.
    started = await watching.until(lambda: watching.oldest() != first, relay)
    if started is None:
        watching.close()
        raise RuntimeError("the pruning job did not start")
    # Pruning began within the last second: what the relay used before, it used idle.
    idle_rate = (started[1] - idle_from[1]) / (started[0] - idle_from[0])
    # It ends once nothing is past its time, and the space it freed is given back.
    ended = await watching.until(
        lambda: not watching.any_past_cutoff() and watching.free_pages() == 0, relay
    )
    watching.close()
    if ended is None:
        raise RuntimeError(f"the pruning job did not end within {WAIT:.0f} s")
    await asyncio.sleep(3.0)  # the checkpoints that copy its last writes into the file
    after = _sizes(run)
    spent = ended[1] - started[1] - idle_rate * (ended[0] - started[0])
    share = spent / DAY.total_seconds()
    report = run.report
    report.add(
        "pruning a day's worth",
        f"{count:,} watches in {ended[0] - started[0]:.0f} s, {spent:.1f} s of CPU "
        f"({spent / max(1, count) * 1e6:.0f} us a watch)",
    )
    report.add(
        "its share of a core over the day",
        f"{100 * share:.3f} %",
        f"< {100 * TARGET_SHARE:.0f} %",
        share < TARGET_SHARE,
    )
    report.add("database file", f"{before} before, {after} after")
    report.notes.append(
        f"the idle relay used {100 * idle_rate:.1f} % of a core, taken off the job's figure"
    )
    await relay.stop()
    print("\n== Figures (one relay process, SQLite, idle but for pruning)")
    report.print()


class _Watcher:
    """Looks at the relay's file from the outside, read-only, by index: a second's glance."""

    def __init__(self, run: Run, cutoff: datetime) -> None:
        self._connection = sqlite3.connect(f"file:{run.database}?mode=ro", uri=True)
        self._cutoff = seed.text(cutoff)

    def oldest(self) -> str | None:
        """When the finished watch that finished first finished, as stored."""
        oldest: str | None = self._connection.execute(
            f"SELECT min(updated_at) FROM watches WHERE {_FINISHED}"
        ).fetchone()[0]
        return oldest

    def any_past_cutoff(self) -> bool:
        """Whether a finished watch past its retention is left."""
        found = self._connection.execute(
            f"SELECT 1 FROM watches WHERE {_FINISHED} AND updated_at <= ? LIMIT 1",
            (self._cutoff,),
        ).fetchone()
        return found is not None

    def free_pages(self) -> int:
        free: int = self._connection.execute("PRAGMA freelist_count").fetchone()[0]
        return free

    async def until(
        self, condition: Callable[[], bool], relay: Server
    ) -> tuple[float, float] | None:
        """When `condition` first held, with the relay's CPU then, looking every second."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            at = await _cpu_at(relay)
            if condition():
                return at
            await asyncio.sleep(1.0)
        return None

    def close(self) -> None:
        self._connection.close()


async def _cpu_at(relay: Server) -> tuple[float, float]:
    used = relay.cpu_seconds()
    if used is None:
        raise RuntimeError(f"the relay exited:\n{relay.log_tail()}")
    return time.time(), used


def _sizes(run: Run) -> str:
    """The database file's size, and its write-ahead log's."""
    wal = run.database.with_name(run.database.name + "-wal")
    sizes = [p.stat().st_size / MB if p.exists() else 0.0 for p in (run.database, wal)]
    return f"{sizes[0]:,.0f} MB (and {sizes[1]:,.0f} MB of log)"
