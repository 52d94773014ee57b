"""`--soak MINUTES`: minutes of steady churn, and what it does to the relay's memory and disk.

About `--watches` tasks are being watched at any moment: that many are registered at the start,
and new ones at the rate the others end (`--watches` / `--task-seconds` a second), each ending
after half to one and a half `--task-seconds` (nine in ten succeed); every webhook is accepted.
Every second the relay's RSS and CPU and the sizes of its SQLite file and write-ahead log are
sampled, and every `--sample-every` seconds a line is printed with what the window saw. At the
end, after the webhooks of the last tasks have come, the figures: the highest and the last
values, and whether every task that ended got its one webhook.

`--relay-env RELAY_RETENTION=120` makes the relay prune as it goes, so the file's size levels
off instead of growing with every task.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from bench import figures, tasks
from bench.load import REQUEST_TIMEOUT
from bench.results import MB
from bench.servers import Server

if TYPE_CHECKING:
    from bench.scenario import Run

#: Registrations in flight at once.
CONCURRENCY = 50
#: Share of tasks that fail.
FAILED_SHARE = 0.1


@dataclass(slots=True)
class Window:
    """What one `--sample-every` window saw, from samples taken every second."""

    start: float
    rss: list[float] = field(default_factory=list)
    db: list[float] = field(default_factory=list)
    wal: list[float] = field(default_factory=list)
    cpu: tuple[float, float] | None = None


async def execute(run: Run) -> None:
    config = run.config
    minutes = config.soak_minutes or 0.0
    upstream, receiver = await run.start_harness()
    await run.seed()
    relay = run.start_relay(upstream)
    await relay.wait_ready()
    rate = config.watches / config.task_seconds
    print(
        f"\n== Soak: {minutes:g} min, about {config.watches:,} watches active "
        f"({rate:,.0f} tasks/s registered, each {config.task_seconds / 2:g}-"
        f"{config.task_seconds * 1.5:g} s long; relay pid {relay.pid})"
    )
    print("  minute   RSS MB (max)   CPU %   database MB   WAL MB (max)   registered   webhooks")
    start = time.time()
    until = start + minutes * 60
    counts = {"registered": 0, "refused": 0}
    registering = asyncio.create_task(
        _register_steadily(run, relay.url, f"{receiver.url}/hooks", rate, until, counts)
    )
    windows = await _sample(run, relay, receiver, counts, start=start, until=until)
    await registering
    end = time.time()
    up, rx = await run.settle_webhooks(upstream, receiver, end)
    report = run.report
    figures.exactly_once(report, up["tasks"], rx["arrivals"], end=end)
    _soak_figures(report, windows, counts, minutes)
    print("\n== Figures (one relay process, SQLite, steady churn)")
    report.print()


async def _register_steadily(
    run: Run,
    relay_url: str,
    callback: str,
    rate: float,
    until: float,
    counts: dict[str, int],
) -> None:
    """`--watches` registrations at once, then `rate` a second, each task's length drawn."""
    config = run.config
    rng = random.Random(config.seed)
    slots = asyncio.Semaphore(CONCURRENCY)
    sent: set[asyncio.Task[None]] = set()

    async def register(session: aiohttp.ClientSession, task_id: str) -> None:
        async with slots:
            try:
                body = {"task_id": task_id, "callback_url": callback}
                async with session.post(f"{relay_url}/v1/watches", json=body) as response:
                    await response.read()
                    ok = response.status == 201
            except (aiohttp.ClientError, TimeoutError):
                ok = False
        counts["registered" if ok else "refused"] += 1

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        headers={"Authorization": f"Bearer {run.api_key}"},
    ) as session:

        def send(n: int, seconds: float) -> None:
            outcome = tasks.FAILED if rng.random() < FAILED_SHARE else tasks.SUCCEEDED
            task_id = tasks.task_id(n, tasks.Course(outcome, seconds=round(seconds, 1)))
            task = asyncio.create_task(register(session, task_id))
            sent.add(task)
            task.add_done_callback(sent.discard)

        mean = config.task_seconds
        # The first ones end evenly over two task lengths: as many end each second as begin.
        for n in range(config.watches):
            send(n, rng.uniform(1.0, 2 * mean))
        n, began = config.watches, time.time()
        while (now := time.time()) < until:
            while n < config.watches + (now - began) * rate:
                send(n, rng.uniform(mean / 2, mean * 1.5))
                n += 1
            await asyncio.sleep(0.05)
        if sent:
            await asyncio.gather(*sent)


async def _sample(
    run: Run,
    relay: Server,
    receiver: Server,
    counts: dict[str, int],
    *,
    start: float,
    until: float,
) -> list[Window]:
    """Every second: RSS and file sizes; every `--sample-every` seconds, a line."""
    windows: list[Window] = []
    window = Window(start, cpu=_cpu(relay))
    async with aiohttp.ClientSession() as session:
        while (now := time.time()) < until:
            await asyncio.sleep(1.0)
            rss = relay.rss_mb()
            if rss is not None:
                window.rss.append(rss)
            window.db.append(_size_mb(run.database))
            window.wal.append(_size_mb(run.database.with_name(run.database.name + "-wal")))
            if now - window.start >= run.config.sample_every or now + 1.0 >= until:
                async with session.get(f"{receiver.url}/_stats/count") as response:
                    webhooks = (await response.json())["webhooks"]
                _print_window(window, relay, start, counts["registered"], webhooks)
                windows.append(window)
                window = Window(time.time(), cpu=_cpu(relay))
    return windows


def _cpu(relay: Server) -> tuple[float, float] | None:
    used = relay.cpu_seconds()
    return None if used is None else (time.time(), used)


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / MB
    except FileNotFoundError:
        return 0.0


def _print_window(window: Window, relay: Server, start: float, registered: int, hooks: int) -> None:
    now = _cpu(relay)
    cpu = "-"
    if window.cpu is not None and now is not None and now[0] > window.cpu[0]:
        cpu = f"{100 * (now[1] - window.cpu[1]) / (now[0] - window.cpu[0]):.0f}"
    rss = f"{window.rss[-1]:.0f} ({max(window.rss):.0f})" if window.rss else "-"
    wal = f"{window.wal[-1]:.1f} ({max(window.wal):.1f})" if window.wal else "-"
    db = f"{window.db[-1]:.1f}" if window.db else "-"
    print(
        f"  {(time.time() - start) / 60:6.1f}   {rss:>13}   {cpu:>5}   {db:>11}   {wal:>12}"
        f"   {registered:>10,}   {hooks:>8,}"
    )


def _soak_figures(
    report: figures.Report, windows: list[Window], counts: dict[str, int], minutes: float
) -> None:
    rss = [mb for w in windows for mb in w.rss]
    db = [mb for w in windows for mb in w.db]
    wal = [mb for w in windows for mb in w.wal]
    if not rss or not db:
        report.add("soak", "no samples")
        return
    settled = [mb for w in windows[len(windows) // 2 :] for mb in w.rss]
    report.add(
        "relay RSS",
        f"max {max(rss):.0f} MB; second half {min(settled):.0f}-{max(settled):.0f} MB; "
        f"last {rss[-1]:.0f} MB",
        "< 200 MB",
        max(rss) < 200,
    )
    report.add("database file", f"max {max(db):.1f} MB, last {db[-1]:.1f} MB")
    report.add(
        "write-ahead log",
        f"max {max(wal):.1f} MB, last {wal[-1]:.1f} MB",
        "tens of MB at the most",
        max(wal) < 100,
    )
    report.notes.append(
        f"{counts['registered']:,} tasks registered in {minutes:g} min"
        + (f", {counts['refused']:,} registrations failed" if counts["refused"] else "")
    )
