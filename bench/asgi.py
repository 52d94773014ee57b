"""The little ASGI the fake upstream and the receiver need, without a framework in the way."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    json_body: bool = True,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*(headers or []), *(_JSON if json_body and body else [])]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, value: object) -> None:
    await respond(send, status, json.dumps(value, separators=(",", ":")).encode())


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class PerSecond:
    """Counts events per wall-clock second, to find the busiest one-second window."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, at: float) -> None:
        second = int(at)
        self.counts[second] = self.counts.get(second, 0) + 1

    @property
    def busiest(self) -> int:
        return max(self.counts.values(), default=0)
