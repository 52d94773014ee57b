"""Command line: `python -m app openapi | simulator | listen | trigger | clients`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

import uvicorn

from app.devkit import listener, mounted_simulator, trigger
from app.settings import Settings

if TYPE_CHECKING:
    from app.store import client_apps

DEFAULT_RELAY_URL = "http://127.0.0.1:8000"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    status: int = args.run(args)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    openapi = commands.add_parser(
        "openapi", help="print the OpenAPI document (JSON) to standard output"
    )
    openapi.set_defaults(run=_openapi)

    simulator = commands.add_parser(
        "simulator", help="serve the simulated upstream on its own (NEBULA_BASE_URL points at it)"
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8100)
    simulator.set_defaults(run=_simulator)

    listen = commands.add_parser(
        "listen",
        help="receive webhooks locally, verify and print them, optionally forward them",
        description="The signing secret is --secret, else RELAY_SIGNING_SECRET, else fetched "
        "from the relay's GET /v1/client with --api-key or RELAY_API_KEY.",
    )
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=9000)
    listen.add_argument("--secret", help="the whsec_ secret webhooks are signed with")
    listen.add_argument("--relay-url", default=DEFAULT_RELAY_URL, help="to fetch the secret")
    listen.add_argument("--api-key", help="the relay's API key (default: RELAY_API_KEY)")
    listen.add_argument(
        "--forward-to", metavar="URL", help="pass each webhook on, unchanged, to this URL"
    )
    listen.set_defaults(run=_listen)

    trig = commands.add_parser(
        "trigger", help="submit a simulated task with a chosen outcome and watch it"
    )
    trig.add_argument("--outcome", choices=["succeeded", "failed"], default="succeeded")
    trig.add_argument(
        "--model",
        default="wan2.5-t2v-preview",
        help="the result's form: wan… a link, veo-… a data: URI, sora-… the download API",
    )
    trig.add_argument("--duration", type=float, default=3.0, help="seconds until the task ends")
    trig.add_argument("--failure-reason", help="the error message of a failed task")
    trig.add_argument("--callback", required=True, metavar="URL", help="where the webhook goes")
    trig.add_argument("--relay-url", default=DEFAULT_RELAY_URL)
    trig.add_argument("--api-key", help="the relay's API key (default: RELAY_API_KEY)")
    trig.add_argument(
        "--upstream-url", help="a standalone simulator (default: the relay's own, /simulator)"
    )
    trig.add_argument(
        "--upstream-key", help="key to submit with (default: NEBULA_API_KEY, else sk-simulator)"
    )
    trig.set_defaults(run=_trigger)

    clients = commands.add_parser(
        "clients",
        help="manage client apps: their API keys and signing secrets",
        description="Works on the database RELAY_DATABASE_URL names, directly (migrated first, "
        "as the relay does), with the relay's encryption key (RELAY_ENCRYPTION_KEY, or the key "
        "file beside a SQLite database). New keys and secrets are printed once.",
    )
    actions = clients.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="a new client app: prints its API key and signing secret"
    )
    create.add_argument("--name", required=True, help="what you call the app (unique)")
    actions.add_parser("list", help="every client app, revoked ones included")
    for action, text in (
        ("rotate-key", "a new API key (printed); the previous one is refused from now on"),
        (
            "rotate-secret",
            "a new signing secret (printed); the previous one signs too, for "
            "RELAY_SECRET_OVERLAP seconds",
        ),
        ("revoke", "refuse the app's API key from now on; its watches run to their end"),
    ):
        actions.add_parser(action, help=text).add_argument("id", help="the app's id (cli_…)")
    clients.set_defaults(run=_clients)
    return parser


def _openapi(_: argparse.Namespace) -> int:
    from app.main import create_app  # builds the relay app: only this command needs it

    spec = create_app(Settings(_env_file=None)).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return 0


def _simulator(args: argparse.Namespace) -> int:
    from app.devkit.simulator import create_simulator

    uvicorn.run(create_simulator(), host=args.host, port=args.port)
    return 0


def _listen(args: argparse.Namespace) -> int:
    settings = Settings()
    secret, source = args.secret, "--secret"
    if secret is None and settings.signing_secret is not None:
        secret, source = settings.signing_secret.get_secret_value(), "RELAY_SIGNING_SECRET"
    api_key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if secret is None and api_key is not None:
        source = f"the relay at {args.relay_url}"
        try:
            secret = asyncio.run(listener.fetch_secret(args.relay_url, api_key))
        except listener.SecretNotFound as exc:
            return _fail(f"cannot verify webhooks: {exc}")
    if secret is None:
        return _fail(
            "cannot verify webhooks without the signing secret: pass --secret, set "
            "RELAY_SIGNING_SECRET, or set RELAY_API_KEY to fetch it from the relay"
        )
    print(
        listener.banner(host=args.host, port=args.port, source=source, forward_to=args.forward_to),
        flush=True,
    )
    app = listener.create_listener(
        secret=secret, forward_to=args.forward_to, emit=lambda line: print(line, flush=True)
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _trigger(args: argparse.Namespace) -> int:
    settings = Settings()
    api_key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if api_key is None:
        return _fail("the relay's API key is needed: pass --api-key or set RELAY_API_KEY")
    upstream_key = args.upstream_key or (
        settings.nebula_api_key.get_secret_value()
        if settings.nebula_api_key
        else mounted_simulator.API_KEY
    )
    simulation = trigger.Simulation(
        outcome=args.outcome,
        model=args.model,
        duration=args.duration,
        failure_reason=args.failure_reason,
    )
    try:
        watch = asyncio.run(
            trigger.trigger(
                simulation,
                callback_url=args.callback,
                relay_url=args.relay_url,
                api_key=api_key,
                upstream_url=args.upstream_url,
                upstream_key=upstream_key,
            )
        )
    except trigger.TriggerFailed as exc:
        return _fail(str(exc))
    print(
        f"watch {watch['id']} registered: task {listener.shorten(watch['task_id'])} "
        f"({simulation.model}) ends {simulation.outcome} in about {simulation.duration:g} s; "
        f"its webhook goes to {watch['callback_url']}",
        flush=True,
    )
    return 0


def _clients(args: argparse.Namespace) -> int:
    from app.encryption import KeyMissingError, UndecryptableError
    from app.store import client_apps

    try:
        return asyncio.run(_manage_clients(args, Settings()))
    except KeyMissingError as exc:
        return _fail(str(exc))
    except client_apps.ClientNotFoundError as exc:
        return _fail(f"no client app with id {exc}")
    except (
        client_apps.ClientRevokedError,
        client_apps.NameTakenError,
        client_apps.InvalidNameError,
        UndecryptableError,
    ) as exc:
        return _fail(str(exc))


async def _manage_clients(args: argparse.Namespace, settings: Settings) -> int:
    from app.relay import open_store
    from app.store import client_apps

    db, key_box = await open_store(settings)
    apps = client_apps.ClientApps(db, key_box=key_box, secret_overlap=settings.secret_overlap)
    try:
        if args.action == "create":
            made = await apps.create(args.name)
            print(
                f"client app {_named(made.client)} created. Its API key is shown only this once "
                "(the relay keeps only a digest of it); the app can fetch its signing secret "
                "again from GET /v1/client.\n"
            )
            print(f"    api key:        {made.api_key}")
            print(f"    signing secret: {made.signing_secret}")
        elif args.action == "list":
            print(_client_table(await apps.all()))
        elif args.action == "rotate-key":
            made = await apps.rotate_key(args.id)
            print(
                f"new API key of {_named(made.client)}, shown only this once; the previous one "
                "is refused from now on:\n"
            )
            print(f"    {made.api_key}")
        elif args.action == "rotate-secret":
            made = await apps.rotate_secret(args.id)
            until = made.client.previous_secret_until
            overlap = (
                f"with it and with the previous one until {until:%Y-%m-%d %H:%M:%S} UTC, then "
                "with it alone"
                if until is not None
                else "with it alone from now on"
            )
            print(f"new signing secret of {_named(made.client)}: webhooks are signed {overlap}:\n")
            print(f"    {made.signing_secret}")
        elif args.action == "revoke":
            app = await apps.revoke(args.id)
            print(
                f"client app {_named(app)} revoked: its API key is refused from now on; its "
                "watches run to their end"
            )
    finally:
        await db.dispose()
    return 0


def _named(app: client_apps.ClientApp) -> str:
    return f"{app.id} ({app.name})"


def _client_table(apps: list[client_apps.ClientApp]) -> str:
    """One line per app: id, created, state, name (last, as the one of any length)."""
    lines = [f"{'id':<32}  {'created (UTC)':<19}  {'state':<40}  name"]
    for app in apps:
        if app.revoked_at is not None:
            state = f"revoked {app.revoked_at:%Y-%m-%d %H:%M:%S}"
        elif app.previous_secret_until is not None:
            state = f"active, old secret until {app.previous_secret_until:%Y-%m-%d %H:%M:%S}"
        else:
            state = "active"
        lines.append(f"{app.id:<32}  {app.created_at:%Y-%m-%d %H:%M:%S}  {state:<40}  {app.name}")
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
