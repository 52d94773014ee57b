"""The fake webhook receiver: answers 204 to any POST and records what arrived, and when.

A callback URL with `?hold_until=<epoch>` is answered `503` with a `Retry-After` up to that
time, and only then accepted: the relay builds up a backlog of webhooks that all fall due at
once, and the rate it delivers them at is its delivery throughput.

Served by uvicorn as a separate process (`uvicorn bench.receiver:app`). Every 50th webhook has
its Standard Webhooks signature checked (with `BENCH_SIGNING_SECRET`), so the figures are about
signed webhooks without the receiver spending its time verifying. `GET /_stats` returns the
records: webhook-id, task id, watch id, event type and arrival time of each webhook; and, for
each `task.succeeded`, what it says of the captured result (`data.video.size_bytes` and
`sha256`, or `data.capture_error.code`), with the links of the first few captured files;
`GET /_stats/count` only how many webhooks came, for a look every few seconds.
"""

from __future__ import annotations

import json
import math
import os
import time
from urllib.parse import parse_qs

from standardwebhooks import Webhook, WebhookVerificationError

from bench.asgi import PerSecond, Receive, Scope, Send, header, read_body, respond, respond_json

VERIFY_EVERY = 50
#: Links to captured files kept, for the harness to download and check.
SAMPLE_LINKS = 5

_secret = os.environ.get("BENCH_SIGNING_SECRET")
_webhook = Webhook(_secret) if _secret else None
_arrivals: list[tuple[str, str, str, str, float]] = []
_per_second = PerSecond()
_signatures = {"verified": 0, "bad": 0}
#: Per `task.succeeded`: task id, size_bytes, sha256 (None without a video), capture error code.
_captures: list[tuple[str, int | None, str | None, str | None]] = []
_links: list[str] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        body = await read_body(receive)
        now = time.time()
        hold = _held_for(scope, now)
        if hold:
            await respond(send, 503, headers=[(b"retry-after", str(hold).encode())])
            return
        await respond(send, 204)
        _record(scope, body, now)
    elif scope["path"] == "/_stats":
        await respond_json(send, 200, _stats())
    elif scope["path"] == "/_stats/count":
        await respond_json(send, 200, {"webhooks": len(_arrivals)})
    else:
        await respond(send, 404)


def _held_for(scope: Scope, now: float) -> int:
    """Whole seconds until the callback's `hold_until`, or 0 once it has passed."""
    values = parse_qs(scope["query_string"].decode()).get("hold_until")
    if not values:
        return 0
    return max(0, math.ceil(float(values[0]) - now))


def _record(scope: Scope, body: bytes, now: float) -> None:
    webhook_id = (header(scope, b"webhook-id") or b"").decode()
    try:
        event = json.loads(body)
        data = event["data"]
        task_id, watch_id, kind = str(data["task_id"]), str(data["watch_id"]), str(event["type"])
    except (ValueError, KeyError, TypeError):
        task_id, watch_id, kind, data = "", "", "unreadable", None
    _arrivals.append((webhook_id, task_id, watch_id, kind, now))
    if kind == "task.succeeded" and isinstance(data, dict):
        _record_capture(task_id, data)
    _per_second.add(now)
    if _webhook is not None and len(_arrivals) % VERIFY_EVERY == 1:
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        try:
            _webhook.verify(body, headers)
            _signatures["verified"] += 1
        except WebhookVerificationError:
            _signatures["bad"] += 1


def _record_capture(task_id: str, data: dict[str, object]) -> None:
    video, error = data.get("video"), data.get("capture_error")
    if isinstance(video, dict):
        size, sha = video.get("size_bytes"), video.get("sha256")
        _captures.append((task_id, size if isinstance(size, int) else None, str(sha), None))
        if len(_links) < SAMPLE_LINKS and isinstance(video.get("url"), str):
            _links.append(video["url"])
    elif isinstance(error, dict):
        _captures.append((task_id, None, None, str(error.get("code"))))
    else:
        # No capture (RELAY_CAPTURE=false): the upstream's link passed through.
        _captures.append((task_id, None, None, None))


def _stats() -> dict[str, object]:
    return {
        "webhooks": len(_arrivals),
        "busiest_second": _per_second.busiest,
        "per_second": _per_second.counts,
        "signatures": _signatures,
        "arrivals": _arrivals,
        "captures": _captures,
        "links": _links,
    }
