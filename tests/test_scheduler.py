"""The ticker: runs jobs every tick and on demand, one run of a job at a time."""

from __future__ import annotations

import asyncio

from app.scheduler import Ticker


async def test_a_kick_while_a_run_is_under_way_runs_the_job_once_more_after_it() -> None:
    ticker = Ticker(interval=60)
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()

    ticker.every_tick("job", job)
    ticker.start()
    await started.wait()
    for _ in range(3):
        ticker.kick("job")
    release.set()
    await asyncio.sleep(0.05)
    await ticker.stop(grace=1)

    assert runs == 2


async def test_a_kick_after_stopping_is_ignored() -> None:
    """A run that ends during a graceful stop may still ask for another job to run."""
    ticker = Ticker(interval=60)
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1

    ticker.every_tick("job", job)
    ticker.start()
    await asyncio.sleep(0.05)
    await ticker.stop(grace=1)
    ticker.kick("job")
    await asyncio.sleep(0.05)

    assert runs == 1
