"""A webhook receiver to deliver to: a real HTTP server that records what it gets."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # loop time of arrival
    peer: int | None = None  # the sender's port: which connection it came over


@dataclass(frozen=True)
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: What the answer says; by default nothing for a 204, "answer <status>" otherwise.
    body: bytes | None = None


@dataclass
class Receiver:
    """Answers each webhook with the next scripted answer (then `default_status`) and keeps it."""

    default_status: int = 204
    #: Answer `webhook.verify` challenges as a receiver that owns its callback does.
    echo_challenges: bool = False
    scripted: deque[Answer] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def answer_next(self, *answers: int | Answer) -> None:
        self.scripted.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        arrived = Received(
            request.url.path,
            dict(request.headers),
            body,
            asyncio.get_running_loop().time(),
            request.client.port if request.client else None,
        )
        async with self._arrived:
            self.received.append(arrived)
            self._arrived.notify_all()
        if self.echo_challenges and (challenge := _challenge(body)) is not None:
            return Response(json.dumps({"challenge": challenge}), media_type="application/json")
        answer = self.scripted.popleft() if self.scripted else Answer(self.default_status)
        await asyncio.sleep(answer.delay)
        content = answer.body
        if content is None:
            content = b"" if answer.status == 204 else f"answer {answer.status}".encode()
        return Response(content, status_code=answer.status, headers=answer.headers)

    async def final_events(
        self, watch_ids: Iterable[str], within: float = 15.0, settle: float = 0.3
    ) -> dict[str, dict[str, Any]]:
        """Wait for one webhook per watch, then `settle` for any duplicate; assert that each
        watch got exactly one, under an id of its own. Returns the bodies by watch id."""
        expected = set(watch_ids)
        await self.wait_for(len(expected), within=within)
        await asyncio.sleep(settle)
        bodies = [json.loads(hook.body) for hook in self.received]
        per_watch = Counter(body["data"]["watch_id"] for body in bodies)
        assert per_watch == dict.fromkeys(expected, 1), per_watch
        assert len({hook.headers["webhook-id"] for hook in self.received}) == len(expected)
        return {body["data"]["watch_id"]: body for body in bodies}

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until `count` webhooks have arrived in all; return them."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


def _challenge(body: bytes) -> str | None:
    event = json.loads(body)
    if event.get("type") != "webhook.verify":
        return None
    challenge: str = event["data"]["challenge"]
    return challenge
