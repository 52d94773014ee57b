"""A cap on request bodies: a route reading one gets a 413 instead of any byte past the cap.

Without it a client could make the relay hold a body of any size in memory, parse it, and echo it
back in a validation error. The count is taken as the route reads, so a route that reads no body
is never refused, and a body that announces its length over the cap is refused unread.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware; the 413 is an `HTTPException`, so it is answered as every refusal is."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = _content_length(scope)
        received = 0

        async def counted() -> Message:
            nonlocal received
            if announced is not None and announced > self.max_bytes:
                raise self._too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is over {self.max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
