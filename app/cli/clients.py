"""`clients`: the operator manages client apps, their API keys and signing secrets, directly on
the database a relay uses."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from app.cli.common import Commands, fail
from app.settings import Settings

if TYPE_CHECKING:
    from app.store import client_apps


def add_commands(commands: Commands) -> None:
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


def _clients(args: argparse.Namespace) -> int:
    from app.encryption import KeyMissingError, UndecryptableError
    from app.store import client_apps

    try:
        return asyncio.run(_manage_clients(args, Settings()))
    except KeyMissingError as exc:
        return fail(str(exc))
    except client_apps.ClientNotFoundError as exc:
        return fail(f"no client app with id {exc}")
    except (
        client_apps.ClientRevokedError,
        client_apps.NameTakenError,
        client_apps.InvalidNameError,
        UndecryptableError,
    ) as exc:
        return fail(str(exc))


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
