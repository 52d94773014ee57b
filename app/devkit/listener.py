"""`python -m app listen`: a local webhook receiver for developing against the relay.

It plays the part `stripe listen` plays for Stripe: every webhook, on any path, is verified with
the signing secret and printed on one line. Without `--forward-to` it answers as a correct
receiver would (204 when the signature verifies, 400 when it does not, so the relay retries).
With `--forward-to` the app under development decides: the raw body and headers are passed on
untouched, whatever the verification said, and the app's answer goes back to the relay.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: Headers that describe one hop, not the webhook: httpx sets its own for the forwarded request.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})
LONGEST_SHOWN_ID = 48
"""Veo task ids run to hundreds of characters; a line shows their start."""


class SecretNotFound(Exception):
    """No secret was given and the relay could not provide one."""


async def fetch_secret(relay_url: str, api_key: str, *, wait: float = 30.0) -> str:
    """The relay's signing secret, from `GET /v1/client`.

    Waits up to `wait` seconds for the relay to come up, so the listener can be started in the
    same breath as the relay.
    """
    async with httpx.AsyncClient(base_url=relay_url, timeout=5.0) as http:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                response = await http.get(
                    "/v1/client", headers={"Authorization": f"Bearer {api_key}"}
                )
                break
            except httpx.TransportError as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    raise SecretNotFound(f"the relay at {relay_url} did not answer") from exc
                await asyncio.sleep(0.25)
    if response.status_code != 200:
        raise SecretNotFound(
            f"the relay at {relay_url} refused GET /v1/client with HTTP "
            f"{response.status_code}: is RELAY_API_KEY right?"
        )
    secret: str = response.json()["signing_secret"]
    return secret


def describe(payload: bytes, *, verified: bool, at: datetime) -> str:
    """One line per webhook: what happened to which task, and whether to trust it."""
    trust = "verified" if verified else "NOT VERIFIED"
    try:
        event = json.loads(payload)
        data = event["data"]
        parts = [at.strftime("%H:%M:%S"), str(event["type"]), f"task={shorten(data['task_id'])}"]
    except (ValueError, TypeError, KeyError):
        return f"{at:%H:%M:%S}  (not a relay event: {len(payload)} bytes)  {trust}"
    parts.append(f"status={data.get('status')}")
    if data.get("url"):
        parts.append(f"url={data['url']}")
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        parts.append(f"error={json.dumps(error['message'])}")
    parts.append(f"watch={data.get('watch_id')}")
    parts.append(trust)
    return "  ".join(parts)


def shorten(task_id: object) -> str:
    text = str(task_id)
    return text if len(text) <= LONGEST_SHOWN_ID else text[:LONGEST_SHOWN_ID] + "…"


def create_listener(
    *, secret: str, forward_to: str | None, emit: Callable[[str], None]
) -> Starlette:
    """The receiver app; `emit` gets each printed line (the command passes `print`)."""
    webhook = Webhook(secret)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=30.0) as http:
            app.state.forward_http = http  # one pooled client for every forwarded webhook
            yield

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            webhook.verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        emit(describe(body, verified=verified, at=datetime.now()))
        if forward_to is None:
            return Response(status_code=204 if verified else 400)
        http: httpx.AsyncClient = request.app.state.forward_http
        return await _forward(http, forward_to, request, body, emit)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])], lifespan=lifespan)


async def _forward(
    http: httpx.AsyncClient, url: str, request: Request, body: bytes, emit: Callable[[str], None]
) -> Response:
    """Passes the webhook on byte for byte; the relay sees the app's status, or a 502."""
    headers: list[tuple[str, str]] = [
        (name, value) for name, value in request.headers.items() if name not in HOP_HEADERS
    ]
    try:
        answer = await http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        emit(f"  -> {url} failed: {type(exc).__name__}; answered 502")
        return Response(status_code=502)
    emit(f"  -> {url} answered {answer.status_code}")
    return Response(answer.content, status_code=answer.status_code)


def banner(*, host: str, port: int, source: str, forward_to: str | None) -> str:
    """The first line printed, so the reader knows where to point callbacks."""
    line = f"Listening for webhooks at http://{host}:{port}/ (any path); secret from {source}"
    return line + (f"; forwarding to {forward_to}" if forward_to else "")
