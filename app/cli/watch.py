"""`watch`: register a watch through the relay's HTTP API, as an app does, and print it."""

from __future__ import annotations

import argparse
import json
from typing import Any, get_args

import httpx

from app.api.schemas import EventType
from app.cli.common import DEFAULT_RELAY_URL, Commands, api_key, fail
from app.settings import Settings

#: Seconds to wait for the relay's answer: a registration with --verify-callback waits for the
#: callback's own answer first.
ANSWER_TIMEOUT = 30.0


def add_commands(commands: Commands) -> None:
    watch = commands.add_parser(
        "watch",
        help="register a watch through the relay's API and print it as JSON",
        description="Register a watch of an upstream task with a running relay (POST "
        "/v1/watches) and print the watch, as the relay answered it, as JSON: a new one, or "
        "the same task and callback's existing one. The API key is --api-key, else "
        "RELAY_API_KEY. Exits 1, saying why, if the relay refuses.",
    )
    watch.add_argument("task_id", metavar="TASK_ID", help="the task id the upstream returned")
    watch.add_argument("--callback", required=True, metavar="URL", help="where the webhook goes")
    watch.add_argument(
        "--relay-url",
        "--relay",
        default=DEFAULT_RELAY_URL,
        metavar="URL",
        help=f"the relay (default: {DEFAULT_RELAY_URL})",
    )
    watch.add_argument("--api-key", help="the relay's API key (default: RELAY_API_KEY)")
    watch.add_argument(
        "--metadata", type=_json_object, metavar="JSON", help="a JSON object the webhook echoes"
    )
    watch.add_argument(
        "--event",
        dest="events",
        action="append",
        choices=get_args(EventType),
        help="an event to receive (repeat for several); the final one is always sent",
    )
    watch.add_argument(
        "--upstream-api-key", metavar="KEY", help="the upstream key the task was submitted with"
    )
    watch.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="expire the watch if its task has not ended by then (default: RELAY_WATCH_TIMEOUT)",
    )
    watch.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="between polls of this task (default: RELAY_POLL_INTERVAL)",
    )
    watch.add_argument(
        "--verify-callback",
        action="store_true",
        help="have the relay prove the callback is yours before it registers the watch",
    )
    watch.add_argument(
        "--idempotency-key", metavar="KEY", help="a retry with the same key gets the first answer"
    )
    watch.set_defaults(run=_watch)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"order\": 42}'")
    return value


def _watch(args: argparse.Namespace) -> int:
    key = api_key(args, Settings())
    if key is None:
        return fail("the relay's API key is needed: pass --api-key or set RELAY_API_KEY")
    body: dict[str, Any] = {"task_id": args.task_id, "callback_url": args.callback}
    options = {
        "metadata": args.metadata,
        "events": args.events,
        "upstream_api_key": args.upstream_api_key,
        "timeout": args.timeout,
        "poll_interval": args.poll_interval,
    }
    body.update((name, value) for name, value in options.items() if value is not None)
    if args.verify_callback:
        body["verify_callback"] = True
    headers = {"Authorization": f"Bearer {key}"}
    if args.idempotency_key is not None:
        headers["Idempotency-Key"] = args.idempotency_key
    url = args.relay_url.rstrip("/") + "/v1/watches"
    try:
        answer = httpx.post(url, json=body, headers=headers, timeout=ANSWER_TIMEOUT)
    except httpx.HTTPError as exc:
        return fail(f"no answer from the relay at {url}: {exc!r}")
    if answer.status_code not in (200, 201):
        return fail(f"the relay refused the watch with HTTP {answer.status_code}: {answer.text}")
    print(json.dumps(answer.json(), indent=2, ensure_ascii=False), flush=True)
    return 0
