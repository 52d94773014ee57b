"""One benchmark run: start the processes, load the relay, restart it, print the figures.

By default the relay runs with `RELAY_CAPTURE=false`, as before result capture, so that the
figures stay comparable: the fake upstream's links are not downloadable. `--capture-mb` turns
capture on, the fake upstream serving a result of that size for every succeeded task;
`--capture-one-mb` is a run of its own, one watch whose result is captured while the relay's
memory is sampled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench import console_queries, figures, load, prune, results, seed, soak, tasks
from bench.servers import (
    HOST,
    Replicas,
    Server,
    fast_server_flags,
    free_port,
    machine_cpu,
    postgres_cpu,
)

UPSTREAM_KEY = "sk-bench"
RELAY_API_KEY = "rk_bench"
SIGNING_SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtMzItYnl0ZXMhIQ=="
#: The key a relay on PostgreSQL encrypts secrets with (a SQLite relay makes its own).
ENCRYPTION_KEY = "u8XnC3b7mGq0y5v1Fh2Jk4Lp6Rs9Tw0Zx3Ad5Ce7Gi8="
QUIET = ["--log-level", "warning", "--no-access-log", "--lifespan", "off"]
#: How long the restart figure waits for the first poll before giving up.
RESTART_TIMEOUT = 30.0
#: How often `--capture-one-mb` samples the relay's RSS, in seconds.
RSS_EVERY = 0.05
#: Captured files downloaded back from the relay's links and checked, after a capture run.
LINKS_CHECKED = 3


@dataclass(frozen=True, slots=True)
class Config:
    watches: int = 10_000
    duration: float = 60.0
    poll_interval: float = 5.0
    concurrency: int = 100
    client_loop_seconds: float = 3.0
    client_loop_concurrency: int = 50
    #: Share of tasks that end together, halfway through the run (the delivery burst).
    batch_share: float = 0.4
    #: Share of tasks that never end within the run.
    never_share: float = 0.15
    #: After the run, seconds to wait for the webhooks of tasks that ended in it.
    settle: float = 15.0
    relay_env: dict[str, str] = field(default_factory=dict)
    relay_access_log: bool = False
    seed: int = 5
    keep: bool = False
    #: Capture on, every succeeded task's result this many MB (`--capture-mb`).
    capture_mb: float | None = None
    #: The run of one watch whose result of this many MB is captured (`--capture-one-mb`).
    capture_one_mb: float | None = None
    #: Minutes of steady churn (`--soak`), with `watches` active and tasks this long on average.
    soak_minutes: float | None = None
    task_seconds: float = 40.0
    #: Seconds between two lines of the soak's samples.
    sample_every: float = 10.0
    #: Finished watches written into the database before the relay starts (`--seed-finished`).
    seed_finished: int = 0
    #: The run that measures pruning this many watches past their retention (`--prune-day`).
    prune_day: int | None = None
    #: Seconds the fake upstream takes to answer each task query (`--upstream-latency`).
    upstream_latency: float = 0.0
    #: The restart at the end kills the relay (SIGKILL) instead of stopping it.
    restart_kill: bool = False
    #: A PostgreSQL server on which a database is made for the run (`--database`); else SQLite.
    database: str | None = None
    #: Relay processes sharing that database (`--replicas`).
    replicas: int = 1
    #: The receiver takes the batch's webhooks as they come instead of holding them back.
    burst: bool = False

    @property
    def result_bytes(self) -> int:
        """The size of the results the fake upstream serves; 0 when capture is off."""
        mb = self.capture_one_mb or self.capture_mb
        return results.size_of(mb) if mb else 0


def batch_end(config: Config, start: float) -> float:
    """When the batch of tasks that end together ends: halfway through the run."""
    return start + config.duration / 2


def batch_release(config: Config, start: float) -> float:
    """Until when the receiver holds the batch's webhooks: two poll intervals after the batch
    ended, by when the relay has detected them all and holds them as one backlog."""
    return batch_end(config, start) + 2 * config.poll_interval


def plan(config: Config, start: float) -> list[str]:
    """The task mix: a batch that ends together at mid-run, tasks of 10-90 s (for a 60 s run;
    scaled with the duration) of which some outlast the run, and tasks that never end."""
    rng = random.Random(config.seed)
    batch_at = batch_end(config, start)
    ids = []
    for n in range(config.watches):
        draw = rng.random()
        if draw < config.batch_share:
            outcome = tasks.FAILED if rng.random() < 0.1 else tasks.SUCCEEDED
            course = tasks.Course(outcome, at=batch_at)
        elif draw < config.batch_share + config.never_share:
            course = tasks.Course(tasks.NEVER)
        else:
            outcome = tasks.FAILED if rng.random() < 0.15 else tasks.SUCCEEDED
            seconds = rng.uniform(config.duration / 6, config.duration * 1.5)
            course = tasks.Course(outcome, seconds=round(seconds, 1))
        ids.append(tasks.task_id(n, course))
    return ids


class Run:
    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.servers: list[Server] = []
        self.report = figures.Report()
        self.api_key = RELAY_API_KEY
        self.database = workdir / "relay.db"
        self.database_url = f"sqlite:///{self.database}"

    def start(self, name: str, app: str, env: dict[str, str], ready: str, **kw: Any) -> Server:
        server = Server(name, app, workdir=self.workdir, env=env, ready_path=ready, **kw)
        self.servers.append(server)
        return server

    def start_relay(self, upstream: Server, *, port: int | None = None) -> Server:
        port = port or free_port()
        if self.config.result_bytes:
            capture = {
                "RELAY_CAPTURE": "true",
                "RELAY_STORAGE_DIR": str(self.workdir / "files"),
                "RELAY_PUBLIC_URL": f"http://{HOST}:{port}",
            }
        else:
            capture = {"RELAY_CAPTURE": "false"}
        env = {
            "NEBULA_BASE_URL": upstream.url,
            "NEBULA_API_KEY": UPSTREAM_KEY,
            "RELAY_API_KEY": RELAY_API_KEY,
            "RELAY_SIGNING_SECRET": SIGNING_SECRET,
            "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
            "RELAY_POLL_INTERVAL": str(self.config.poll_interval),
            "RELAY_DATABASE_URL": self.database_url,
            **({"RELAY_ENCRYPTION_KEY": ENCRYPTION_KEY} if self.config.database else {}),
            **capture,
            **self.config.relay_env,
        }
        flags = [] if self.config.relay_access_log else ["--no-access-log"]
        return self.start("relay", "app.main:app", env, "/readyz", extra_flags=flags, port=port)

    async def start_harness(self) -> tuple[Server, Server]:
        """The fake upstream and the receiver, ready."""
        fast = fast_server_flags()
        upstream = self.start(
            "upstream",
            "bench.upstream:app",
            {
                "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
                "BENCH_RESULT_BYTES": str(self.config.result_bytes),
                "BENCH_UPSTREAM_LATENCY": str(self.config.upstream_latency),
            },
            "/_ping",
            extra_flags=fast + QUIET,
        )
        receiver = self.start(
            "receiver",
            "bench.receiver:app",
            {"BENCH_SIGNING_SECRET": SIGNING_SECRET},
            "/_stats",
            extra_flags=fast + QUIET,
        )
        await asyncio.gather(upstream.wait_ready(), receiver.wait_ready())
        _print_setup(self.config, fast, self.workdir)
        return upstream, receiver

    async def default_client(self) -> str:
        """The id of the client app the relay will serve the benchmark as, made ahead of it."""
        return await seed.default_client(
            self.database_url, api_key=RELAY_API_KEY, signing_secret=SIGNING_SECRET
        )

    async def seed(self) -> None:
        """`--seed-finished` watches, finished over the last 29 days (none yet due to go)."""
        count = self.config.seed_finished
        if not count:
            return
        client_id = await self.default_client()
        now = datetime.now(UTC)
        took = await asyncio.to_thread(
            seed.seed_finished,
            self.database,
            client_id=client_id,
            count=count,
            newest=now - timedelta(minutes=1),
            oldest=now - timedelta(days=29),
        )
        size = self.database.stat().st_size / results.MB
        print(f"  seeded {count:,} finished watches in {took:.0f} s: the file is {size:,.0f} MB")

    async def execute(self) -> None:
        if self.config.capture_one_mb:
            await self.execute_capture_one()
            return
        if self.config.soak_minutes:
            await soak.execute(self)
            return
        if self.config.prune_day:
            await prune.execute(self)
            return
        config = self.config
        upstream, receiver = await self.start_harness()
        await self.seed()

        print(
            f"\n== Raw client loop: GET of a small JSON from the fake upstream, "
            f"{config.client_loop_concurrency} in flight, {config.client_loop_seconds:.0f} s each"
        )
        rates = await load.client_loop_rates(
            upstream.url + "/_ping",
            concurrency=config.client_loop_concurrency,
            seconds=config.client_loop_seconds,
        )
        reference = {"httpx.AsyncClient": "~400 /s", "aiohttp": "~8,500 /s"}
        for name, rate in rates.items():
            ref = next((v for k, v in reference.items() if name.startswith(k)), None)
            note = f"   [issue's reference machine: {ref}]" if ref else ""
            print(f"  {name:<42} {rate:>8,.0f} requests/s{note}")

        relays = [self.start_relay(upstream) for _ in range(config.replicas)]
        await asyncio.gather(*(relay.wait_ready() for relay in relays))
        start = time.time()
        task_ids = plan(config, start)
        release = batch_release(config, start)
        pids = ", ".join(str(relay.pid) for relay in relays)
        print(f"\n== Load: {len(task_ids):,} watches, {config.duration:.0f} s (relay pid {pids})")
        sampler = asyncio.create_task(
            _sample(
                Replicas(relays),
                upstream,
                receiver,
                until=start + config.duration,
                database=bool(config.database),
            )
        )
        records = await load.register_all(
            [relay.url for relay in relays],
            api_key=RELAY_API_KEY,
            task_ids=task_ids,
            callback_url=lambda task_id: (
                f"{receiver.url}/hooks?hold_until={release:.3f}"
                if tasks.in_batch(task_id) and not config.burst
                else f"{receiver.url}/hooks"
            ),
            concurrency=config.concurrency,
            deadline=start + config.duration,
        )
        registered_by = max((r.done for r in records), default=start)
        peak_rss, peak_children_rss, end_rss, cpu_samples = await sampler
        end = time.time()
        up_stats, rx_stats = await self.settle_webhooks(upstream, receiver, end)
        settled = time.time()

        ups_tasks: dict[str, Any] = up_stats["tasks"]
        active = sum(
            1
            for r in records
            if r.status == 201 and ups_tasks.get(r.task_id, {}).get("terminal_at") is None
        )
        size = config.result_bytes
        checked = await _check_links(rx_stats["links"], size) if size else []
        restart, killed = await self._restart(relays, upstream)
        up_final, rx_final = await asyncio.gather(
            _get_json(upstream.url + "/_stats"), _get_json(receiver.url + "/_stats")
        )

        report = self.report
        downloads: list[list[Any]] = up_stats["downloads"]
        windows = _capture_windows(downloads, ups_tasks, end)
        batch_ended = batch_end(config, start)
        burst = (
            figures.burst_window(ups_tasks, rx_stats["arrivals"], ended_at=batch_ended)
            if config.burst
            else None
        )
        if burst is not None:
            windows["in the burst, other tasks"] = burst
        figures.registrations(report, records, len(task_ids))
        figures.polling(
            report,
            ups_tasks,
            records,
            interval=config.poll_interval,
            start=start,
            registered_by=registered_by,
            end=end,
            windows=windows,
        )
        figures.detection_to_delivery(
            report, ups_tasks, rx_stats["arrivals"], end=end, capture=bool(size)
        )
        if size:
            figures.capture_latency(
                report,
                ups_tasks,
                rx_stats["arrivals"],
                downloads,
                end=end,
                settled=settled,
                size=size,
            )
            figures.batch_captures(
                report, ups_tasks, downloads, rx_stats["arrivals"], release=release, size=size
            )
            figures.captured_files(report, rx_final["captures"], size=size, checked=checked)
        if config.burst:
            figures.burst_webhooks(report, ups_tasks, rx_stats["arrivals"], ended_at=batch_ended)
        else:
            figures.delivery_throughput(
                report,
                rx_stats["arrivals"],
                release=release,
                held_back=sum(1 for task_id in task_ids if tasks.in_batch(task_id)),
                polling=config.batch_share < 1,
                capturing=bool(size),
            )
        figures.memory(report, peak_rss, end_rss, active, children=peak_children_rss)
        figures.restart(report, *restart, active)
        if killed is not None:
            figures.polled_again_after_kill(
                report,
                up_final["tasks"],
                killed_at=killed[0],
                restarted_at=killed[1],
                interval=config.poll_interval,
            )
        figures.exactly_once(
            report,
            up_final["tasks"],
            rx_final["arrivals"],
            end=end,
            downloads=up_final["downloads"] if size else None,
        )
        figures.cost_per_poll(report, cpu_samples, ups_tasks, since=registered_by, until=end)
        figures.cpu(report, cpu_samples, start=start, cores=os.cpu_count() or 1)
        signatures = rx_final["signatures"]
        report.notes.append(
            f"signatures checked on a sample: {signatures['verified']} verified,"
            f" {signatures['bad']} bad"
        )
        report.notes.append(
            f"busiest second at the upstream: {up_stats['busiest_second']:,} requests"
        )
        print(f"\n== Figures ({_deployment(config)}): measured, target, verdict")
        report.print()

    async def execute_capture_one(self) -> None:
        """One watch, whose task succeeds at its first poll with a result of `capture_one_mb`;
        the relay's RSS sampled every `RSS_EVERY` s from before that poll until its webhook
        has come."""
        config = self.config
        size = config.result_bytes
        upstream, receiver = await self.start_harness()
        relay = self.start_relay(upstream)
        await relay.wait_ready()
        print(
            f"\n== Capture of one {size / results.MB:g} MB result (relay pid {relay.pid}), "
            f"the relay's RSS every {RSS_EVERY * 1000:.0f} ms"
        )
        rss: list[tuple[float, float]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(relay, rss, stop))
        await asyncio.sleep(1.0)  # the baseline, with the relay idle
        task_id = tasks.task_id(0, tasks.Course(tasks.SUCCEEDED, seconds=0.0))
        records = await load.register_all(
            [relay.url],
            api_key=RELAY_API_KEY,
            task_ids=[task_id],
            callback_url=lambda _task_id: f"{receiver.url}/hooks",
            concurrency=1,
            deadline=time.time() + 30.0,
        )
        if not records or records[0].status != 201:
            stop.set()
            await sampler
            raise RuntimeError(f"the watch was not registered: {records}")
        print(f"  registered {task_id}: its first poll, in {config.poll_interval:g} s, sees it end")
        arrival = await _final_arrival(
            receiver, within=config.poll_interval + max(config.settle, 120.0)
        )
        await asyncio.sleep(1.0)  # and a second after
        stop.set()
        await sampler
        up, rx = await asyncio.gather(
            _get_json(upstream.url + "/_stats"), _get_json(receiver.url + "/_stats")
        )
        checked = await _check_links(rx["links"], size)
        await relay.stop()
        downloads = [d for d in up["downloads"] if d[0] == task_id]
        report = self.report
        figures.capture_one(
            report,
            rss,
            terminal_at=up["tasks"].get(task_id, {}).get("terminal_at"),
            arrival=arrival,
            download=downloads[0] if downloads else None,
            size=size,
        )
        figures.captured_files(report, rx["captures"], size=size, checked=checked)
        if len(downloads) > 1:
            report.notes.append(f"the result was downloaded {len(downloads)} times")
        print(f"\n== Figures ({_deployment(config)}): measured, target, verdict")
        report.print()

    async def settle_webhooks(
        self, upstream: Server, receiver: Server, end: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Give the webhooks of tasks that ended within the run `settle` seconds to arrive."""
        deadline = time.monotonic() + self.config.settle
        while True:
            up, rx = await asyncio.gather(
                _get_json(upstream.url + "/_stats"), _get_json(receiver.url + "/_stats")
            )
            ended = {
                task_id
                for task_id, t in up["tasks"].items()
                if t["terminal_at"] is not None and t["terminal_at"] <= end
            }
            delivered = {a[1] for a in rx["arrivals"]}
            if ended <= delivered or time.monotonic() >= deadline:
                return up, rx
            await asyncio.sleep(1.0)

    async def _restart(
        self, relays: list[Server], upstream: Server
    ) -> tuple[tuple[float | None, str], tuple[float, float] | None]:
        """SIGTERM the relays (SIGKILL with `--restart-kill`), start them again on the same
        database, time the first poll.

        Returns the seconds from the start to the first poll (None if none came) with details,
        and when the relays were killed and started again (None if they were stopped).
        """
        killed_at = None
        if self.config.restart_kill:
            await _while_polling(upstream, within=2 * self.config.poll_interval)
            killed_at = time.time()
            for relay in relays:
                relay.kill()
            stopping = time.time() - killed_at
        else:
            stopping = max(await asyncio.gather(*(relay.stop() for relay in relays)))
        again = [self.start_relay(upstream, port=relay.port) for relay in relays]
        ready = max(await asyncio.gather(*(relay.wait_ready() for relay in again)))
        started_at = min(relay.started_at for relay in again)
        first_poll = None
        deadline = time.monotonic() + RESTART_TIMEOUT
        while first_poll is None and time.monotonic() < deadline:
            since = await _get_json(f"{upstream.url}/_stats/since?t={started_at}")
            first_poll = since["first_poll"]
            if first_poll is None:
                await asyncio.sleep(0.05)
        # Let it work a little (a restart must not send duplicates); after a kill, for three
        # intervals, to see every active watch polled again.
        await asyncio.sleep(3 * self.config.poll_interval if killed_at else 3.0)
        await asyncio.gather(*(relay.stop() for relay in again))
        killed = (killed_at, started_at) if killed_at is not None else None
        if first_poll is None:
            return (None, f"within {RESTART_TIMEOUT:.0f} s"), killed
        how = "killed" if killed_at else f"stop took {stopping:.1f} s"
        detail = f"({how}, ready after {ready:.1f} s)"
        return (first_poll - started_at, detail), killed


async def _while_polling(upstream: Server, *, within: float) -> None:
    """Return once the upstream has just seen polls: watches registered together are polled in
    waves, and a kill between two waves would find no poll in flight."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        since = await _get_json(f"{upstream.url}/_stats/since?t={time.time() - 0.05}")
        if since["polls"] >= 10:
            return
        await asyncio.sleep(0.01)


async def _get_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
        response = await client.get(url)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def _sample_rss(relay: Server, into: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """(when, MB) of the relay's VmRSS every `RSS_EVERY` seconds until `stop`."""
    while not stop.is_set():
        mb = relay.rss_mb()
        if mb is not None:
            into.append((time.time(), mb))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_EVERY)


async def _final_arrival(receiver: Server, *, within: float) -> float | None:
    """When the receiver got the first final webhook, waiting up to `within` seconds."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            response = await client.get(receiver.url + "/_stats")
            for _webhook_id, _task_id, _watch_id, kind, at in response.json()["arrivals"]:
                if kind in ("task.succeeded", "task.failed"):
                    return float(at)
            await asyncio.sleep(RSS_EVERY)
    return None


async def _check_links(links: list[str], size: int) -> list[str]:
    """Download a few captured files through the relay's own links, as a receiver would, and
    compare them with what the fake upstream served."""
    expected = results.sha256(size)
    found: list[str] = []
    async with httpx.AsyncClient(timeout=120.0, trust_env=False) as client:
        for url in links[:LINKS_CHECKED]:
            digest, got = hashlib.sha256(), 0
            async with client.stream("GET", url) as response:
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    got += len(chunk)
            right = digest.hexdigest() == expected
            if response.status_code != 200:
                found.append(f"HTTP {response.status_code}")
            elif got != size or not right:
                found.append(f"{got:,} bytes, {'right' if right else 'wrong'} sha256")
            else:
                found.append("complete and right")
    return found


def _capture_windows(
    downloads: list[list[Any]], ups_tasks: dict[str, Any], end: float
) -> dict[str, figures.Window]:
    """When captures ran, from the fake upstream's records: from the first download to the end
    of the last; and from the first poll that saw a task of the batch succeed to the end of the
    batch's last download."""
    spans = [(d[1], d[2]) for d in downloads if d[2] is not None and d[1] <= end]
    if not spans:
        return {}
    windows = {
        "while captures ran": figures.Window(
            min(a for a, _ in spans), min(end, max(b for _, b in spans))
        )
    }
    batch = [b for d in downloads if tasks.in_batch(d[0]) and (b := d[2]) is not None]
    seen = [
        at
        for task_id, t in ups_tasks.items()
        if tasks.in_batch(task_id) and (at := t["terminal_at"]) is not None
    ]
    if batch and seen:
        windows["while the batch was captured"] = figures.Window(min(seen), min(end, max(batch)))
    return windows


async def _sample(
    relay: Server | Replicas,
    upstream: Server,
    receiver: Server,
    *,
    until: float,
    database: bool,
) -> tuple[float | None, float | None, float | None, list[figures.CpuSample]]:
    """Relay memory and CPU, the harness's and the machine's CPU, every second, and a progress
    line every ten; returns the peak RSS (of the relay's processes, then of its capture process
    alone), the last, and the CPU samples."""
    peak: float | None = None
    peak_children: float | None = None
    last: float | None = None
    server_cpu = postgres_cpu if database else (lambda: None)

    def sample() -> figures.CpuSample:
        return figures.CpuSample(
            time.time(),
            relay.cpu_seconds(),
            machine_cpu(),
            server_cpu(),
            workers=relay.cpu_seconds(children_only=True),
            harness=_harness_cpu(upstream, receiver),
        )

    samples = [sample()]
    tick = 0
    while time.time() < until:
        await asyncio.sleep(min(1.0, max(0.0, until - time.time())))
        samples.append(sample())
        last = relay.rss_mb()
        if last is not None:
            peak = max(peak or 0.0, last)
        if (children := relay.rss_mb(children_only=True)) is not None:
            peak_children = max(peak_children or 0.0, children)
        tick += 1
        if tick % 10 == 0:
            up = await _get_json(f"{upstream.url}/_stats/since?t=0")
            downloads = f"  results downloaded {up['downloads']:>6,}" if up["downloads"] else ""
            print(
                f"  {tick:>4} s  upstream polls {up['polls']:>8,}{downloads}"
                f"  relay RSS {last or 0:.0f} MB"
            )
    return peak, peak_children, last, samples


def _harness_cpu(upstream: Server, receiver: Server) -> float | None:
    """The fake upstream's and the receiver's CPU together; None once either is gone."""
    upstream_cpu, receiver_cpu = upstream.cpu_seconds(), receiver.cpu_seconds()
    if upstream_cpu is None or receiver_cpu is None:
        return None
    return upstream_cpu + receiver_cpu


def _print_setup(config: Config, fast: list[str], workdir: Path) -> None:
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print("== Setup")
    print(f"  servers: uvicorn {' '.join(fast) or '(default loop and http)'}; harness loop: {loop}")
    print(f"  registration client: aiohttp, {config.concurrency} concurrent")
    print(
        f"  poll interval {config.poll_interval:g} s; relay env: {config.relay_env or 'defaults'}"
    )
    if config.upstream_latency:
        print(f"  upstream: answers every poll {config.upstream_latency * 1000:g} ms after it came")
    if config.result_bytes:
        print(
            f"  capture: on (RELAY_CAPTURE=true), every result {config.result_bytes:,} bytes "
            f"({config.result_bytes / results.MB:g} MB), served by the fake upstream; "
            f"stored in {workdir / 'files'}"
        )
    else:
        print(
            "  capture: off (RELAY_CAPTURE=false, the upstream's links passed through as before "
            "capture; --capture-mb turns it on)"
        )


async def run(config: Config) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    bench = Run(config, workdir)
    try:
        async with _database(config) as url:
            if url is not None:
                bench.database_url = url
            await bench.execute()
    finally:
        for server in bench.servers:
            server.kill()
        if config.keep:
            print(f"\nlogs and database kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def _database(config: Config) -> AsyncIterator[str | None]:
    """With `--database`, a new database on that PostgreSQL server, dropped after the run."""
    if config.database is None:
        yield None
        return
    name = f"relay_bench_{secrets.token_hex(4)}"
    async with console_queries.postgres(config.database) as server:
        await server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(config.database).set(database=name).render_as_string(hide_password=False)
        finally:
            if config.keep:
                print(f"  kept the database {name}")
            else:
                await server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _deployment(config: Config) -> str:
    processes = "one relay process" if config.replicas == 1 else f"{config.replicas} relays"
    return f"{processes}, {'PostgreSQL' if config.database else 'SQLite'}"
