"""`python -m bench.console [--watches N] [--database URL] ...`: how fast the operator console
answers with a client app's 100,000 watches in the database (issue 20's target: the list and a
watch's page in under 50 ms at the 99th percentile), and how many queries a refresh of an open
list costs the relay.

The relay runs in a process of its own, as operators run it, on a database filled beforehand
(`bench.console_data`). The harness signs in as a browser would (the form, its CSRF token, the
session cookie) and asks for each kind of page in turn, one request at a time, after a warm-up:
the figures are the time a page takes to be served, not what a busy relay makes of many at once.
The queries are counted afterwards in a relay run inside the harness's process, the same
requests made once more, each statement it runs for them recorded (`--explain` prints their
plans).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from app.encryption import KeyBox
from app.main import create_app
from app.settings import Settings
from app.store import client_apps
from app.store.database import migrate, open_database
from bench import console_data, console_queries
from bench.figures import Report, percentile
from bench.servers import Server, machine_cpu

API_KEY = "rk_bench_console"
ADMIN_TOKEN = "bench-console-admin-token-0123456789"
SIGNING_SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtMzItYnl0ZXMhIQ=="
ENCRYPTION_KEY = "u8XnC3b7mGq0y5v1Fh2Jk4Lp6Rs9Tw0Zx3Ad5Ce7Gi8="
#: The target of issue 20, for the list and a watch's page.
TARGET_P99_MS = 50.0
#: How far back the seeded watches go: within the default retention of 30 days.
HISTORY = timedelta(days=28)
#: The console's page size (`app.console.routes.PAGE_SIZE`); a deep page starts this far in.
PAGE = 50


@dataclass(frozen=True, slots=True)
class Config:
    watches: int = 100_000
    other_watches: int = 5_000
    requests: int = 300
    warm_up: int = 20
    #: None: a SQLite file; else a PostgreSQL server, on which a database is made for the run.
    database: str | None = None
    seed: int = 20
    keep: bool = False
    explain: bool = False


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of request the console makes, with how to draw one."""

    label: str
    path: Callable[[random.Random], str]
    headers: dict[str, str] = field(default_factory=dict)
    #: Signed in with the admin token (every app's watches) rather than the app's key.
    admin: bool = False


@dataclass(slots=True)
class Timings:
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def kinds(watch_ids: Sequence[str], task_ids: Sequence[str]) -> list[Kind]:
    """What an operator's browser asks for: lists (filtered, paged), the refresh htmx makes of
    an open list, and watches' pages."""
    count = len(watch_ids)

    def deep(rng: random.Random) -> str:
        # Anywhere from the 20th page to the last: `before` is the last id of the page before.
        return f"/console/watches?before={watch_ids[rng.randrange(0, count - 20 * PAGE)]}"

    return [
        Kind("list", lambda _: "/console/watches"),
        Kind("list, state=failed", lambda _: "/console/watches?state=failed"),
        Kind(
            "list, task id prefix",
            lambda rng: f"/console/watches?task_id={rng.choice(task_ids)[:9]}",
        ),
        Kind("list, deep page (before=)", deep),
        Kind("refresh (htmx fragment)", lambda _: "/console/watches", {"HX-Request": "true"}),
        Kind("a watch's page", lambda rng: f"/console/watches/{rng.choice(watch_ids)}"),
        Kind("list, as the admin (every app)", lambda _: "/console/watches", admin=True),
    ]


async def run(config: Config) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        async with _database(config, workdir) as url:
            await _measure(config, url, workdir)
    finally:
        if config.keep:
            print(f"\n  kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def _measure(config: Config, url: str, workdir: Path) -> None:
    backend = make_url(url).get_backend_name()
    print(
        f"== Console benchmark: {config.watches:,} watches of one app and "
        f"{config.other_watches:,} of another, {backend}"
    )
    ours, others = await _seed(config, url)
    settings = _settings(url, workdir)
    report = Report()
    to_time = kinds(ours.watch_ids, ours.task_ids)
    relay = Server(
        "relay",
        "app.main:app",
        workdir=workdir,
        env=_environment(settings),
        ready_path="/readyz",
        extra_flags=["--no-access-log"],
    )
    try:
        await relay.wait_ready()
        print(
            f"\n== Timing: {config.requests} requests of each kind after {config.warm_up} to "
            f"warm up, one at a time (relay pid {relay.pid})"
        )
        async with (
            _signed_in(relay.url, API_KEY) as app_client,
            _signed_in(relay.url, ADMIN_TOKEN) as admin_client,
        ):
            before = (time.monotonic(), relay.cpu_seconds(), machine_cpu())
            for kind in to_time:
                client = admin_client if kind.admin else app_client
                timings = await _time(client, kind, config, random.Random(config.seed))
                _add_timings(report, kind, timings)
            after = (time.monotonic(), relay.cpu_seconds(), machine_cpu())
        report.notes.append(_busy(before, after))
    finally:
        await relay.stop()
    print("\n== Queries: the same requests, once each, in a relay inside this process")
    statements = await _count_queries(settings, to_time, random.Random(config.seed))
    await _add_queries(report, url, statements)
    kinds_written = ", ".join(f"{n:,} {kind}" for kind, n in ours.kinds.most_common())
    report.notes.append(f"the app's watches: {kinds_written}")
    report.notes.append(
        f"written in {ours.seconds + others.seconds:.0f} s "
        f"({ours.rows + others.rows:,} rows: watches, task changes, events, attempts)"
    )
    print(f"\n== Figures ({config.watches:,} watches, {backend}): measured, target, verdict")
    report.print()
    if config.explain:
        await console_queries.print_plans(url, statements)


@contextlib.asynccontextmanager
async def _database(config: Config, workdir: Path) -> AsyncIterator[str]:
    """A SQLite file in `workdir`, or a new database on the PostgreSQL server, dropped after."""
    if config.database is None:
        yield f"sqlite:///{workdir / 'relay.db'}"
        return
    name = f"bench_console_{secrets.token_hex(4)}"
    async with console_queries.postgres(config.database) as server:
        await server.execute(f'CREATE DATABASE "{name}"')
        yield make_url(config.database).set(database=name).render_as_string(hide_password=False)
        if config.keep:
            print(f"  kept the database {name}")
        else:
            await server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def _seed(config: Config, url: str) -> tuple[console_data.Seeded, console_data.Seeded]:
    """The benchmarked app (the relay's default one, whose key is `API_KEY`) and another."""
    db = open_database(url)
    rng = random.Random(config.seed)
    key_box = KeyBox.from_config(ENCRYPTION_KEY)
    try:
        await migrate(db)
        boot = await client_apps.bootstrap_default_client(
            db, api_key=API_KEY, signing_secret=SIGNING_SECRET, key_box=key_box
        )
        other = await client_apps.ClientApps(db, key_box=key_box, secret_overlap=0).create(
            "another app"
        )
        now = datetime.now(UTC)
        ours = await console_data.seed(
            db,
            client_id=boot.client.id,
            count=config.watches,
            newest=now,
            oldest=now - HISTORY,
            rng=rng,
        )
        others = await console_data.seed(
            db,
            client_id=other.client.id,
            count=config.other_watches,
            newest=now,
            oldest=now - HISTORY,
            rng=rng,
        )
    finally:
        await db.dispose()
    if config.database is not None:
        # What autovacuum would do within a minute of so many new rows: without the statistics,
        # the planner takes every table for a few rows.
        async with console_queries.postgres(url) as pg:
            await pg.execute("ANALYZE")
    print(
        f"  seeded {ours.rows + others.rows:,} rows in {ours.seconds + others.seconds:.0f} s "
        f"({config.watches + config.other_watches:,} watches with their task changes, events "
        "and attempts)"
    )
    return ours, others


def _settings(url: str, workdir: Path) -> Settings:
    """An idle relay: no watch is due, nothing is polled or sent; no upstream is ever asked."""
    return Settings(
        _env_file=None,
        database_url=url,
        nebula_base_url="http://127.0.0.1:9",
        nebula_api_key="sk-bench",
        api_key=API_KEY,
        signing_secret=SIGNING_SECRET,
        encryption_key=ENCRYPTION_KEY,
        admin_token=ADMIN_TOKEN,
        allow_private_callbacks=True,
        capture=False,
        storage_dir=str(workdir / "files"),
        log_level="warning",
    )


def _environment(settings: Settings) -> dict[str, str]:
    """The same settings, as the relay process reads them."""
    env = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        variable = name.upper() if name.startswith("nebula_") else f"RELAY_{name.upper()}"
        env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextlib.asynccontextmanager
async def _signed_in(
    base_url: str, key: str, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a console session, signed in through the form as a browser is."""
    async with httpx.AsyncClient(
        base_url=base_url, transport=transport, trust_env=False, timeout=30.0
    ) as client:
        form = await client.get("/console/sign-in")
        token = re.search(r'name="csrf" value="([^"]*)"', form.text)
        if form.status_code != 200 or token is None:
            raise RuntimeError(f"no sign-in form at /console/sign-in ({form.status_code})")
        answer = await client.post("/console/sign-in", data={"key": key, "csrf": token[1]})
        if answer.status_code != 303:
            raise RuntimeError(f"sign-in refused ({answer.status_code}): {answer.text[:300]}")
        yield client


async def _time(
    client: httpx.AsyncClient, kind: Kind, config: Config, rng: random.Random
) -> Timings:
    timings = Timings()
    for n in range(config.warm_up + config.requests):
        path = kind.path(rng)
        started = time.perf_counter()
        answer = await client.get(path, headers=kind.headers)
        took = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
        if n >= config.warm_up:
            timings.seconds.append(took)
            timings.sizes.append(len(answer.content))
    return timings


CpuAt = tuple[float, float | None, tuple[float, float] | None]


def _busy(before: CpuAt, after: CpuAt) -> str:
    """How busy the relay and the machine were while the pages were timed: other processes
    slow the relay down, and show in the 99th percentiles first."""
    (start, relay_start, machine_start), (end, relay_end, machine_end) = before, after
    parts = []
    if relay_start is not None and relay_end is not None:
        share = (relay_end - relay_start) / (end - start)
        parts.append(f"the relay used {100 * share:.0f} % of a core")
    if machine_start is not None and machine_end is not None:
        busy = machine_end[0] - machine_start[0]
        total = machine_end[1] - machine_start[1]
        cores = os.cpu_count() or 1
        parts.append(
            f"the machine's {cores} cores were {100 * busy / total:.0f} % busy "
            "(this harness and any other process included)"
        )
    return "while timing, " + " and ".join(parts) if parts else "CPU not measured"


def _add_timings(report: Report, kind: Kind, timings: Timings) -> None:
    p50 = percentile(timings.seconds, 50) * 1000
    p99 = percentile(timings.seconds, 99) * 1000
    size = sum(timings.sizes) / len(timings.sizes) / 1000
    report.add(
        kind.label,
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({size:.0f} kB)",
        f"p99 < {TARGET_P99_MS:.0f} ms",
        p99 < TARGET_P99_MS,
    )


async def _count_queries(
    settings: Settings, to_time: Sequence[Kind], rng: random.Random
) -> dict[str, console_queries.Recorded]:
    """Each kind's statements, from one request after one to warm up, in a relay run here."""
    found: dict[str, console_queries.Recorded] = {}
    with console_queries.recording():
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with (
                _signed_in("http://relay", API_KEY, transport) as app_client,
                _signed_in("http://relay", ADMIN_TOKEN, transport) as admin_client,
            ):
                for kind in to_time:
                    client = admin_client if kind.admin else app_client
                    path = kind.path(rng)
                    (await client.get(path, headers=kind.headers)).raise_for_status()
                    answer, found[kind.label] = await console_queries.recorded(
                        functools.partial(client.get, path, headers=kind.headers)
                    )
                    answer.raise_for_status()
    return found


async def _add_queries(
    report: Report, url: str, found: dict[str, console_queries.Recorded]
) -> None:
    for label, recorded in found.items():
        statements = recorded.statements
        alone = await console_queries.time_alone(url, statements) * 1000
        measured = (
            f"{len(statements)} in {recorded.transactions} transaction(s), {alone:.2f} ms run alone"
        )
        if label.startswith("refresh"):
            report.add(f"queries: {label}", measured, "1 small query", len(statements) <= 1)
            for statement in statements:
                report.notes.append(f"a refresh runs: {_shortened(statement.sql)}")
        else:
            report.add(f"queries: {label}", measured)


def _shortened(sql: str, width: int = 110) -> str:
    one_line = " ".join(sql.split())
    return one_line if len(one_line) <= width else one_line[: width - 3] + "..."


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.console",
        description="How fast the operator console's pages are served with many watches in "
        "the database, and the queries a refresh costs; prints the figures beside issue 20's "
        "targets.",
    )
    parser.add_argument(
        "--watches", type=int, default=100_000, help="watches of the app signed in as"
    )
    parser.add_argument(
        "--other-watches", type=int, default=5_000, help="watches of another app among them"
    )
    parser.add_argument("--requests", type=int, default=300, help="timed requests of each kind")
    parser.add_argument("--warm-up", type=int, default=20, help="requests of each kind first")
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a PostgreSQL server (postgresql://user@host:port/database) on which a database "
        "is made for the run and dropped after; default: a SQLite file",
    )
    parser.add_argument("--seed", type=int, default=20, help="seed of the data and the draws")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of every statement counted"
    )
    args = parser.parse_args(argv)
    if args.watches < 25 * PAGE or args.other_watches < 0:
        parser.error(f"--watches wants at least {25 * PAGE}, --other-watches 0 or more")
    if args.requests < 1 or args.warm_up < 0:
        parser.error("--requests wants 1 or more, --warm-up 0 or more")
    if args.database is not None and make_url(args.database).get_backend_name() != "postgresql":
        parser.error("--database wants a postgresql:// URL (SQLite is the default)")
    return Config(
        watches=args.watches,
        other_watches=args.other_watches,
        requests=args.requests,
        warm_up=args.warm_up,
        database=args.database,
        seed=args.seed,
        keep=args.keep,
        explain=args.explain,
    )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
