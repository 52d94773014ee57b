"""The clock of the background work: APScheduler runs the poller and the deliverer every tick.

Due work is derived from the database at each run (not from jobs stored in the scheduler), so
nothing is lost with the process and any replica can pick up what another left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

Job = Callable[[], Awaitable[None]]


class Ticker:
    def __init__(self, *, interval: float) -> None:
        self._interval = interval
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._kicks: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def every_tick(self, name: str, job: Job) -> None:
        """Run `job` now and then every tick.

        A run still going when the next tick comes simply continues: the tick is skipped here,
        quietly, because under load that is normal, not a warning as APScheduler would log it.
        """
        self._jobs[name] = job
        self._scheduler.add_job(
            self._run,
            "interval",
            args=(name, job),
            seconds=self._interval,
            id=name,
            next_run_time=datetime.now(UTC),
            max_instances=2,
            coalesce=True,
            misfire_grace_time=None,
        )

    def every(self, name: str, seconds: float, job: Job) -> None:
        """Run `job` every `seconds`, first after `seconds`: for upkeep that is never urgent."""
        self._scheduler.add_job(
            self._run,
            "interval",
            args=(name, job),
            seconds=seconds,
            id=name,
            max_instances=2,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._jobs[name] = job

    def kick(self, *names: str) -> None:
        """Run jobs now rather than at the next tick, because new work has just been written.

        If one is running already, it runs once more as soon as it ends: the run in progress may
        have looked for work before the new work was committed.
        """
        for name in names:
            job = self._jobs.get(name)
            if job is None:
                continue  # stopping: a run that ends now must not start another
            if name in self._running:
                self._again.add(name)  # what `_run` would do, without a task per kick
                continue
            task = asyncio.create_task(self._run(name, job))
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)

    def kick_in(self, name: str, delay: float) -> None:
        """Run a job in `delay` seconds, because work falls due then and the next tick may be
        later: a retry is sent when its receiver asked for it, not up to a tick after.

        One timer per job, for the soonest time asked; a delay no shorter than the tick is left
        to the tick.
        """
        if name not in self._jobs or delay >= self._interval:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(name)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[name] = loop.call_at(when, self._ring, name)

    def _ring(self, name: str) -> None:
        del self._timers[name]
        self.kick(name)

    async def _run(self, name: str, job: Job) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        if name in self._running:
            self._again.add(name)
            return
        self._running[name] = task
        try:
            await job()
            while name in self._again:
                self._again.discard(name)
                await job()
        finally:
            del self._running[name]

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self, grace: float) -> None:
        """Stop ticking, give the runs in progress `grace` seconds to end, then cancel them.

        A cancelled run leaves its claimed rows leased; they are released or expire, and the work
        is done again. Nothing is lost, at worst polled or delivered twice.
        """
        self._scheduler.pause()
        self._jobs.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        runs = set(self._running.values()) | self._kicks
        if runs:
            await asyncio.wait(runs, timeout=grace)
        for run in runs:
            run.cancel()
        if runs:
            await asyncio.wait(runs)
        self._scheduler.shutdown(wait=False)
