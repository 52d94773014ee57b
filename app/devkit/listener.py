"""`python -m app listen`: a local webhook receiver for developing against the relay.

It plays the part `stripe listen` plays for Stripe: every webhook, on any path, is verified with
the signing secret and printed on one line. Without `--forward-to` it answers as a correct
receiver would (204 when the signature verifies, 400 when it does not, so the relay retries).
With `--forward-to` the app under development decides: the raw body and headers are passed on
untouched, whatever the verification said, and the app's answer goes back to the relay.

When a verified webhook points at a video (`data.video.url`, else `data.url`), the listener then
downloads it, once the relay has its answer, hashing it as it streams, and prints a second line:
its size and type, and whether it matches the `sha256` the webhook announced. That shows at once
whether the link the relay handed out works and serves what it promised.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: Headers that describe one hop, not the webhook: httpx sets its own for the forwarded request.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})
LONGEST_SHOWN_ID = 48
"""Veo task ids run to hundreds of characters; a line shows their start."""
LONGEST_SHOWN_URL = 72
"""Video lines show links without their query (a signature, not to be spread in logs)."""
VIDEO_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
"""Per network operation, not for the whole download: a large video may take minutes."""


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
    capture_error = data.get("capture_error")
    if isinstance(capture_error, dict):
        parts.append(f"capture_error={capture_error.get('code')}")
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        parts.append(f"error={json.dumps(error['message'])}")
    parts.append(f"watch={data.get('watch_id')}")
    parts.append(trust)
    return "  ".join(parts)


def shorten(task_id: object) -> str:
    text = str(task_id)
    return text if len(text) <= LONGEST_SHOWN_ID else text[:LONGEST_SHOWN_ID] + "…"


def shorten_url(url: str) -> str:
    """The link without its query, cut to `LONGEST_SHOWN_URL` characters."""
    base, query, _ = url.partition("?")
    shown = base + ("?…" if query else "")
    return shown if len(shown) <= LONGEST_SHOWN_URL else shown[: LONGEST_SHOWN_URL - 1] + "…"


@dataclass(frozen=True, slots=True)
class VideoClaim:
    """What a webhook says about its video: where it is and, with capture, what it must be."""

    url: str
    sha256: str | None = None
    size: int | None = None


def video_claim(payload: bytes) -> VideoClaim | None:
    """The video a webhook points at, if it is an http(s) link; `data.video` (the relay's
    capture) is preferred, as it says what the file must hash to."""
    try:
        data = json.loads(payload)["data"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(data, dict):
        return None
    video = data.get("video")
    if isinstance(video, dict) and isinstance(video.get("url"), str):
        sha256, size = video.get("sha256"), video.get("size_bytes")
        claim = VideoClaim(
            video["url"],
            sha256=sha256 if isinstance(sha256, str) else None,
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )
    elif isinstance(data.get("url"), str):
        claim = VideoClaim(data["url"])
    else:
        return None
    return claim if claim.url.startswith(("https://", "http://")) else None


def human_size(size: int) -> str:
    """Decimal units, as a file manager shows them."""
    for limit, unit in ((10**9, "GB"), (10**6, "MB"), (10**3, "kB")):
        if size >= limit:
            return f"{size / limit:.1f} {unit}"
    return f"{size} B"


async def check_video(
    http: httpx.AsyncClient, claim: VideoClaim, emit: Callable[[str], None]
) -> None:
    """Downloads the video, hashing it piece by piece, and prints what came of it.

    Only the digest and a count are kept, never the file, so a video of any size can be checked.
    """
    where = shorten_url(claim.url)
    sha256, size = hashlib.sha256(), 0
    try:
        async with http.stream("GET", claim.url) as response:
            if response.status_code != 200:
                emit(f"  video download failed: HTTP {response.status_code} ({where})")
                return
            content_type = response.headers.get("content-type", "no content type")
            async for chunk in response.aiter_bytes():
                sha256.update(chunk)
                size += len(chunk)
    except httpx.HTTPError as exc:
        emit(f"  video download failed: {type(exc).__name__} ({where})")
        return
    parts = ["  video", human_size(size), content_type]
    if claim.sha256 is None:
        parts.append("sha256 not announced")
    elif claim.sha256.lower() == sha256.hexdigest():
        parts.append("sha256 ok")
    else:
        parts.append("sha256 MISMATCH")
    if claim.size is not None and claim.size != size:
        parts.append(f"size MISMATCH ({size} bytes, announced {claim.size})")
    emit(" ".join(parts) + f" ({where})")


def create_listener(
    *, secret: str, forward_to: str | None, emit: Callable[[str], None]
) -> Starlette:
    """The receiver app; `emit` gets each printed line (the command passes `print`)."""
    webhook = Webhook(secret)

    checks: set[asyncio.Task[None]] = set()

    async def start_check(http: httpx.AsyncClient, claim: VideoClaim) -> None:
        """Runs a video check on its own, so the relay's connection is free at once (async, as
        Starlette would run a plain function in a worker thread, away from the event loop)."""
        task = asyncio.create_task(check_video(http, claim, emit))
        checks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(checks.discard)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            httpx.AsyncClient(timeout=30.0) as http,
            httpx.AsyncClient(timeout=VIDEO_TIMEOUT, follow_redirects=True) as videos,
        ):
            app.state.forward_http = http  # one pooled client for every forwarded webhook
            app.state.video_http = videos
            yield
            for check in list(checks):  # stopping must not wait for a long download
                check.cancel()
            await asyncio.gather(*checks, return_exceptions=True)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            webhook.verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        emit(describe(body, verified=verified, at=datetime.now()))
        if forward_to is None:
            response = Response(status_code=204 if verified else 400)
        else:
            http: httpx.AsyncClient = request.app.state.forward_http
            response = await _forward(http, forward_to, request, body, emit)
        # Only a verified webhook is trusted to name a link worth fetching.
        claim = video_claim(body) if verified else None
        if claim is not None:
            videos: httpx.AsyncClient = request.app.state.video_http
            # Started once the answer is sent: the relay never waits for the download.
            response.background = BackgroundTask(start_check, videos, claim)
        return response

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
