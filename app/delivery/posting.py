"""A webhook's HTTP exchange: the POST, and what is kept of the answer.

The deliverer decides what an attempt means (delivered, due again when, dead); this is the
exchange alone, so that it runs the same in the relay's process or in an HTTP process
(`app/http_processes.py`), from which only its small `Answer` comes back.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import httpx

from app.delivery import callbacks
from app.transport import parsed_url, timeout_extension

#: How much of a receiver's answer is kept in the attempt log.
EXCERPT_BYTES = 1024
#: The answers whose `Retry-After` the deliverer obeys.
ASKING_TO_WAIT = (429, 503)


class Answer(NamedTuple):
    """What a POST came to: a status (with an `error` too if the answer broke off after it), or
    only an error when no answer came."""

    status_code: int | None
    #: The start of the answer's body, as text.
    excerpt: str | None = None
    #: The `Retry-After` header of a 429 or 503, as sent.
    retry_after: str | None = None
    #: Why no whole answer came: refused by the callback policy, a timeout, a connection error.
    error: str | None = None


class WebhookPoster(Protocol):
    """Sends a webhook and tells what came of it; a destination the callback policy refuses is
    an `Answer` with an error, not an exception."""

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer: ...


class TransportPoster:
    """Posts through a transport of this process (`pinning.create_callback_transport`)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, *, timeout: float) -> None:
        self._transport = transport
        self._extensions = timeout_extension(timeout)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        request = httpx.Request(
            "POST", parsed_url(url), content=body, headers=headers, extensions=self._extensions
        )
        status_code: int | None = None
        try:
            response = await self._transport.handle_async_request(request)
            try:
                status_code = response.status_code
                excerpt = await _read_excerpt(response)
            finally:
                await response.aclose()
        except callbacks.CallbackRefused as exc:
            return Answer(status_code, error=f"refused: {exc}")
        except httpx.TimeoutException:
            return Answer(status_code, error="timeout")
        except httpx.TransportError as exc:
            return Answer(status_code, error=f"connection error: {type(exc).__name__}")
        retry_after = response.headers.get("retry-after") if status_code in ASKING_TO_WAIT else None
        return Answer(status_code, excerpt, retry_after)


async def _read_excerpt(response: httpx.Response) -> str:
    """Read no more of the answer than we keep: a receiver's body is not ours to buffer.

    An answer that has no body (a 204, or a `Content-Length` of 0) is not read at all: going
    through httpx's streaming to find it empty cost a tenth of a webhook's CPU.
    """
    if response.status_code == 204 or response.headers.get("content-length") == "0":
        return ""
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= EXCERPT_BYTES:
            break
    # A NUL is no text to PostgreSQL, which would refuse the attempt's record (and so the
    # webhook would be sent again): kept as the replacement character, like undecodable bytes.
    return received[:EXCERPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
