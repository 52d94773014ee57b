"""`python -m bench [--quick] [--watches N] [--duration S] ...`: run the load benchmark."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Sequence

from bench.scenario import Config, run


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmark of the relay: a fake upstream, a receiver and the relay as "
        "separate processes on 127.0.0.1; prints the figures of issue 5 beside their targets.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 watches, 15 s")
    parser.add_argument("--watches", type=int, help="watches registered (default 10000)")
    parser.add_argument("--duration", type=float, help="seconds the load runs (default 60)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="RELAY_POLL_INTERVAL")
    parser.add_argument(
        "--concurrency", type=int, default=100, help="concurrent registering clients"
    )
    parser.add_argument(
        "--client-loop-seconds", type=float, default=3.0, help="length of each raw client loop"
    )
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds to wait for late webhooks after the run (default 15; 120 with capture on)",
    )
    parser.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another environment variable for the relay, e.g. RELAY_POLL_CONCURRENCY=200",
    )
    parser.add_argument(
        "--relay-access-log", action="store_true", help="keep uvicorn's access log in the relay"
    )
    parser.add_argument(
        "--batch-share",
        type=float,
        default=0.4,
        help="share of tasks that end together halfway through the run (default 0.4); with 1, "
        "the held-back webhooks drain with no polling going on",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="the receiver takes the batch's webhooks as they come, and the run is judged by "
        "how fast they go out and how punctually the other tasks are polled meanwhile "
        "(e.g. --watches 20000 --batch-share 0.5 --never-share 0.5 --burst)",
    )
    parser.add_argument(
        "--never-share",
        type=float,
        default=0.15,
        help="share of tasks that never end within the run (default 0.15)",
    )
    parser.add_argument(
        "--upstream-latency",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds the fake upstream takes to answer each poll, as a distant one would "
        "(default 0)",
    )
    parser.add_argument(
        "--restart-kill",
        action="store_true",
        help="the restart at the end kills the relay (SIGKILL) instead of stopping it, and "
        "times how soon every watch still active is polled again",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a PostgreSQL server (postgresql://user@host:port/database) on which a database is "
        "made for the run and dropped after; its server's CPU is counted apart. Default: SQLite",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="N relay processes sharing the --database, registrations shared out among them; "
        "their memory and CPU are added up (default 1)",
    )
    parser.add_argument("--seed", type=int, default=5, help="seed of the task mix")
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs, the database and the captured files"
    )
    capture = parser.add_mutually_exclusive_group()
    capture.add_argument(
        "--capture-mb",
        type=float,
        metavar="MB",
        help="capture on (RELAY_CAPTURE=true; off by default, so figures compare with runs "
        "before capture): every succeeded task's result is MB MiB, served by the fake upstream",
    )
    capture.add_argument(
        "--capture-one-mb",
        type=float,
        metavar="MB",
        help="a run of its own: one watch, whose result of MB MiB is captured while the relay's "
        "RSS is sampled every 50 ms (the other load flags do not apply)",
    )
    retention = parser.add_argument_group("soak and retention")
    runs = retention.add_mutually_exclusive_group()
    runs.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="a run of its own: MINUTES of steady churn, about --watches (default 5000) tasks "
        "active, new ones registered as others end; prints the relay's RSS and CPU and the "
        "sizes of its database and write-ahead log as it goes",
    )
    runs.add_argument(
        "--prune-day",
        type=int,
        metavar="N",
        help="a run of its own: N finished watches past RELAY_RETENTION (a day's worth at N "
        "tasks a day) in the database, and the idle relay's pruning job timed",
    )
    retention.add_argument(
        "--task-seconds",
        type=float,
        default=40.0,
        help="--soak: mean length of a task, in seconds (default 40)",
    )
    retention.add_argument(
        "--sample-every",
        type=float,
        default=10.0,
        help="--soak: seconds between two printed samples (default 10)",
    )
    retention.add_argument(
        "--seed-finished",
        type=int,
        default=0,
        metavar="N",
        help="N finished watches (with their events and attempts) written into the database "
        "before the relay starts, finished over the last 29 days: to stay",
    )
    args = parser.parse_args(argv)
    _check(parser, args)
    relay_env = _relay_env(parser, args.relay_env)
    watches, duration, settle = _run_length(args)
    return Config(
        watches=watches,
        duration=duration,
        poll_interval=args.poll_interval,
        concurrency=args.concurrency,
        client_loop_seconds=args.client_loop_seconds,
        settle=settle,
        relay_env=relay_env,
        relay_access_log=args.relay_access_log,
        batch_share=args.batch_share,
        never_share=args.never_share,
        seed=args.seed,
        keep=args.keep,
        capture_mb=args.capture_mb,
        capture_one_mb=args.capture_one_mb,
        soak_minutes=args.soak,
        task_seconds=args.task_seconds,
        sample_every=args.sample_every,
        seed_finished=args.seed_finished,
        prune_day=args.prune_day,
        upstream_latency=args.upstream_latency,
        restart_kill=args.restart_kill,
        database=args.database,
        replicas=args.replicas,
        burst=args.burst,
    )


def _run_length(args: argparse.Namespace) -> tuple[int, float, float]:
    """Watches, seconds of load and seconds of settling, by default as the mode wants them."""
    watches = args.watches or (500 if args.quick else 5_000 if args.soak else 10_000)
    duration = args.duration or (15.0 if args.quick else 60.0)
    capturing = bool(args.capture_mb or args.capture_one_mb)
    settle = args.settle if args.settle is not None else (120.0 if capturing else 15.0)
    return watches, duration, settle


def _relay_env(parser: argparse.ArgumentParser, items: Sequence[str]) -> dict[str, str]:
    relay_env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--relay-env wants NAME=VALUE, not {item!r}")
        relay_env[name] = value
    return relay_env


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what does not make sense (the parser exits with its message)."""
    for size in (args.capture_mb, args.capture_one_mb):
        if size is not None and size <= 0:
            parser.error("--capture-mb and --capture-one-mb want a size above 0")
    _check_shares(parser, args)
    if args.upstream_latency < 0:
        parser.error("--upstream-latency wants seconds, 0 or more")
    if args.soak is not None and args.soak <= 0:
        parser.error("--soak wants minutes above 0")
    if args.task_seconds <= 0 or args.sample_every <= 0:
        parser.error("--task-seconds and --sample-every want seconds above 0")
    if args.seed_finished < 0 or (args.prune_day is not None and args.prune_day <= 0):
        parser.error("--seed-finished wants 0 or more watches, --prune-day more than 0")
    if args.database is not None:
        _check_database(parser, args)
    if args.replicas < 1 or (args.replicas > 1 and (args.database is None or args.capture_mb)):
        parser.error(
            "--replicas wants 1 or more, and more than 1 only with --database (SQLite is one "
            "relay per file) and without capture"
        )


def _check_shares(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    shares = (args.batch_share, args.never_share)
    if min(shares) < 0 or sum(shares) > 1:
        parser.error("--batch-share and --never-share must be shares of at most 1 together")
    if args.burst and not 0 < args.batch_share < 1:
        parser.error("--burst wants a batch and other tasks: --batch-share between 0 and 1")


def _check_database(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.database.startswith("postgresql"):
        parser.error("--database wants a postgresql:// URL (SQLite is the default)")
    if args.soak or args.prune_day or args.seed_finished or args.capture_one_mb:
        parser.error(
            "--database is for the load run, not --soak, --prune-day, --seed-finished or "
            "--capture-one-mb"
        )


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    if importlib.util.find_spec("uvloop"):
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run(config))
    else:
        asyncio.run(run(config))


if __name__ == "__main__":
    main()
