"""The fake webhook receiver: answers 204 to any POST and records what arrived, and when.

Served by uvicorn as a separate process (`uvicorn bench.receiver:app`). Every 50th webhook has
its Standard Webhooks signature checked (with `BENCH_SIGNING_SECRET`), so the figures are about
signed webhooks without the receiver spending its time verifying. `GET /_stats` returns the
records: webhook-id, task id, watch id, event type and arrival time of each webhook.
"""

from __future__ import annotations

import json
import os
import time

from standardwebhooks import Webhook, WebhookVerificationError

from bench.asgi import PerSecond, Receive, Scope, Send, header, read_body, respond, respond_json

VERIFY_EVERY = 50

_secret = os.environ.get("BENCH_SIGNING_SECRET")
_webhook = Webhook(_secret) if _secret else None
_arrivals: list[tuple[str, str, str, str, float]] = []
_per_second = PerSecond()
_signatures = {"verified": 0, "bad": 0}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        body = await read_body(receive)
        now = time.time()
        await respond(send, 204)
        _record(scope, body, now)
    elif scope["path"] == "/_stats":
        await respond_json(send, 200, _stats())
    else:
        await respond(send, 404)


def _record(scope: Scope, body: bytes, now: float) -> None:
    webhook_id = (header(scope, b"webhook-id") or b"").decode()
    try:
        event = json.loads(body)
        data = event["data"]
        task_id, watch_id, kind = str(data["task_id"]), str(data["watch_id"]), str(event["type"])
    except (ValueError, KeyError, TypeError):
        task_id, watch_id, kind = "", "", "unreadable"
    _arrivals.append((webhook_id, task_id, watch_id, kind, now))
    _per_second.add(now)
    if _webhook is not None and len(_arrivals) % VERIFY_EVERY == 1:
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        try:
            _webhook.verify(body, headers)
            _signatures["verified"] += 1
        except WebhookVerificationError:
            _signatures["bad"] += 1


def _stats() -> dict[str, object]:
    return {
        "webhooks": len(_arrivals),
        "busiest_second": _per_second.busiest,
        "per_second": _per_second.counts,
        "signatures": _signatures,
        "arrivals": _arrivals,
    }
