"""`simulator`, `listen`, `trigger`: the developer kit, for trying the relay and developing
receivers without an upstream account."""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from app import logs
from app.cli.common import DEFAULT_RELAY_URL, Commands, api_key, fail
from app.devkit import listener, mounted_simulator, trigger
from app.settings import Settings


def add_commands(commands: Commands) -> None:
    simulator = commands.add_parser(
        "simulator",
        help="serve the simulated upstream on its own (NEBULA_BASE_URL points at it)",
        description="Serve the simulated upstream on its own; point a relay at it with "
        "NEBULA_BASE_URL=http://HOST:PORT NEBULA_API_KEY=sk-simulator.",
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8100)
    simulator.set_defaults(run=_simulator)

    listen = commands.add_parser(
        "listen",
        help="receive webhooks locally, verify and print them, optionally forward them",
        description="Receive webhooks on any path, verify and print them, optionally forward "
        "them. The signing secret is --secret, else RELAY_SIGNING_SECRET, else fetched "
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
        "trigger",
        help="submit a simulated task with a chosen outcome and watch it",
        description="Submit a simulated task with a chosen outcome to the relay's simulator "
        "(RELAY_SIMULATOR=true) or to --upstream-url, register a watch for it and print the "
        "watch's id.",
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


def _simulator(args: argparse.Namespace) -> int:
    from app.devkit.simulator import create_simulator

    log_config = logs.uvicorn_config(Settings())
    uvicorn.run(create_simulator(), host=args.host, port=args.port, log_config=log_config)
    return 0


def _listen(args: argparse.Namespace) -> int:
    settings = Settings()
    secret, source = args.secret, "--secret"
    if secret is None and settings.signing_secret is not None:
        secret, source = settings.signing_secret.get_secret_value(), "RELAY_SIGNING_SECRET"
    key = api_key(args, settings)
    if secret is None and key is not None:
        source = f"the relay at {args.relay_url}"
        try:
            secret = asyncio.run(listener.fetch_secret(args.relay_url, key))
        except listener.SecretNotFound as exc:
            return fail(f"cannot verify webhooks: {exc}")
    if secret is None:
        return fail(
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
    key = api_key(args, settings)
    if key is None:
        return fail("the relay's API key is needed: pass --api-key or set RELAY_API_KEY")
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
        triggered = asyncio.run(
            trigger.trigger(
                simulation,
                callback_url=args.callback,
                relay_url=args.relay_url,
                api_key=key,
                upstream_url=args.upstream_url,
                upstream_key=upstream_key,
            )
        )
    except trigger.TriggerFailed as exc:
        return fail(str(exc))
    watch = triggered.watch
    print(
        f"watch {watch['id']} registered: task {listener.shorten(watch['task_id'])} "
        f"({simulation.model}) ends {simulation.outcome} in about {simulation.duration:g} s; "
        f"its webhook goes to {watch['callback_url']}",
        flush=True,
    )
    if triggered.console_url is not None:
        print(
            f"  see it in the console: {triggered.console_url} (sign in with the API key)",
            flush=True,
        )
    return 0
