"""`serve`, `migrate`, `openapi`: running the relay, bringing its database up to date, and
describing its API."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app import logs
from app.cli.common import Commands, fail
from app.settings import Settings
from app.stopping import StopClock
from app.store import database, sqlite_guard

#: uvicorn's exit status when the app fails to start (a refused setting, a database in use).
STARTUP_FAILED = 3


def add_commands(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the relay (uvicorn with the relay's defaults)",
        description="Run the relay: its HTTP API and its background work, in this process, "
        "configured by the environment (RELAY_*, NEBULA_*). As `python -m uvicorn app.main:app` "
        "does, except that on SIGTERM the HTTP requests still open share RELAY_SHUTDOWN_GRACE "
        "with the work in flight, so the process is gone within it.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)",
    )
    serve.add_argument("--port", type=int, default=8000, help="the port (default: 8000)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser(
        "migrate",
        help="bring the database's schema up to date, and exit",
        description="Apply the migrations the database RELAY_DATABASE_URL names is missing, "
        "and exit (the relay also does this at start). With --check, change nothing: exit 0 if "
        "the schema is up to date, 1 with a message if it is not.",
    )
    migrate.add_argument(
        "--check", action="store_true", help="only say whether the schema is up to date"
    )
    migrate.set_defaults(run=_migrate)

    openapi = commands.add_parser(
        "openapi",
        help="print the OpenAPI document (JSON) to standard output",
        description="Print the relay's OpenAPI document, as JSON, to standard output.",
    )
    openapi.set_defaults(run=_openapi)


class _Server(uvicorn.Server):
    """Marks the stop signal on the relay's clock as soon as it comes."""

    def __init__(self, config: uvicorn.Config, clock: StopClock) -> None:
        super().__init__(config)
        self._clock = clock

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._clock.mark()
        super().handle_exit(sig, frame)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        return fail(f"invalid configuration: {exc}")
    try:
        # The relay takes this lock for good as it starts; taken here first, a second relay is
        # refused in a line, not in a traceback from the middle of the server's startup.
        with sqlite_guard.held(settings.database_url):
            pass
    except sqlite_guard.DatabaseInUseError as exc:
        return fail(str(exc))
    from app.main import create_app  # not imported before the settings are known to be valid

    clock = StopClock()
    config = uvicorn.Config(
        # Made once uvicorn has set up logging, as `uvicorn app.main:app` imports it.
        lambda: create_app(settings, stop_clock=clock),
        factory=True,
        host=args.host,
        port=args.port,
        lifespan="on",
        log_config=logs.uvicorn_config(settings),
        # What uvicorn waits for HTTP requests in flight: at most the grace, which the relay's
        # own work counts from the same signal.
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )
    server = _Server(config, clock)
    server.run()
    return 0 if server.started else STARTUP_FAILED


def _migrate(args: argparse.Namespace) -> int:
    try:
        url = Settings().database_url
    except ValidationError as exc:
        return fail(f"invalid configuration: {exc}")
    shown = make_url(url).render_as_string(hide_password=True)
    path = database.sqlite_file(url)
    if args.check and path is not None and not path.exists():
        return fail(f"no database at {path} yet: run `migrate` to create it")
    try:
        return asyncio.run(_check(url, shown) if args.check else _upgrade(url, shown))
    except (OSError, SQLAlchemyError) as exc:
        return fail(f"cannot use the database {shown}: {exc}")


async def _check(url: str, shown: str) -> int:
    db = database.open_database(url)
    try:
        state = await database.schema_state(db)
    finally:
        await db.dispose()
    if state.up_to_date:
        print(f"the schema of {shown} is up to date (revision {state.latest})")
        return 0
    if state.current is None:
        return fail(
            f"{shown} has no schema yet (this version needs revision {state.latest}): run `migrate`"
        )
    if not state.known:
        return fail(
            f"the schema of {shown} is at revision {state.current}, which this version does not "
            f"know (it needs {state.latest}): a newer version of the relay migrated it"
        )
    return fail(
        f"the schema of {shown} is behind: at revision {state.current}, this version needs "
        f"{state.latest}; run `migrate`"
    )


async def _upgrade(url: str, shown: str) -> int:
    db = database.open_database(url)
    try:
        before = await database.schema_state(db)
        if not before.known:
            return fail(
                f"the schema of {shown} is at revision {before.current}, which this version does "
                "not know: a newer version of the relay migrated it"
            )
        await database.migrate(db)
    finally:
        await db.dispose()
    if before.up_to_date:
        print(f"the schema of {shown} was already up to date (revision {before.latest})")
    else:
        print(
            f"migrated {shown} from {f'revision {before.current}' if before.current else 'nothing'}"
            f" to revision {before.latest}"
        )
    return 0


def _openapi(_: argparse.Namespace) -> int:
    from app.main import create_app  # builds the relay app: only this command needs it

    spec = create_app(Settings(_env_file=None)).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return 0
