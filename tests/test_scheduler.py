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


class Counted:
    """A job that counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1


async def ticking(job: Counted) -> Ticker:
    """A started ticker that has run `job` once; its next tick is a minute away."""
    ticker = Ticker(interval=60)
    ticker.every_tick("job", job)
    ticker.start()
    await asyncio.sleep(0.05)
    return ticker


async def test_a_kick_after_stopping_is_ignored() -> None:
    """A run that ends during a graceful stop may still ask for another job to run."""
    job = Counted()
    ticker = await ticking(job)
    await ticker.stop(grace=1)
    ticker.kick("job")
    await asyncio.sleep(0.05)

    assert job.runs == 1


async def test_a_job_asked_for_sooner_than_the_tick_runs_then_once() -> None:
    """Of several times asked for, the soonest is kept: work due then finds what is due later."""
    job = Counted()
    ticker = await ticking(job)
    ticker.kick_in("job", 0.6)
    ticker.kick_in("job", 0.2)
    ticker.kick_in("job", 0.4)
    await asyncio.sleep(0.4)
    assert job.runs == 2
    await asyncio.sleep(0.4)
    await ticker.stop(grace=1)

    assert job.runs == 2


async def test_stopping_cancels_the_runs_asked_for_later() -> None:
    job = Counted()
    ticker = await ticking(job)
    ticker.kick_in("job", 0.1)
    await ticker.stop(grace=1)
    await asyncio.sleep(0.2)

    assert job.runs == 1
