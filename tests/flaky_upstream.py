"""A scriptable upstream for the failures the simulator must not fake: every answer shape and
status the real upstream is known to give, refused keys, 5xx, 429, garbage and hangs.

Each task id has a script of answers, served one per request; the last one repeats. An unknown
task id answers `task_not_exist`, as the upstream does. `failure_rate` adds random failures on
top, drawn from a seeded generator so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PREFIX = "/v1/video/generations/"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    hang: bool = False

    @property
    def content(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.body).encode()


def task(status: str, **fields: Any) -> Answer:
    """The documented flat shape."""
    return Answer(200, {"status": status, "format": "mp4", **fields})


def enveloped(status: str, **fields: Any) -> Answer:
    """The shape of the code the upstream is built on."""
    return Answer(200, {"code": "success", "message": "", "data": {"status": status, **fields}})


NOT_FOUND = Answer(400, {"code": "task_not_exist", "message": "task_not_exist", "data": None})
REFUSED = Answer(401, {"error": {"message": "invalid token", "type": "new_api_error"}})
BANNED = Answer(403, {"error": {"message": "account banned", "type": "new_api_error"}})
SERVER_ERROR = Answer(502, raw=b"<html>502 Bad Gateway</html>")
OVERLOADED = Answer(429, {"error": {"message": "too many requests", "type": "rate_limit"}})
GARBAGE = Answer(200, raw=b"<html>maintenance</html>")
WRONG_SHAPE = Answer(200, {"code": "success", "data": None})
HANG = Answer(hang=True)
FAILURES = (SERVER_ERROR, OVERLOADED, GARBAGE, WRONG_SHAPE, HANG)


@dataclass(frozen=True)
class Seen:
    at: float
    task_id: str
    authorization: str | None


@dataclass
class FlakyUpstream:
    failure_rate: float = 0.0
    seed: int = 4
    scripts: dict[str, deque[Answer]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    #: Requests being answered now, and the most there ever were at once.
    in_flight: int = 0
    most_in_flight: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def script(self, task_id: str, *answers: Answer) -> str:
        self.scripts[task_id] = deque(answers)
        return task_id

    def requests_for(self, task_id: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.task_id == task_id]

    def busiest_second(self) -> int:
        """The most requests received in any one-second window (half-open, `[t, t + 1)`)."""
        times = sorted(seen.at for seen in self.seen)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route(PREFIX + "{task_id:path}", self._handle, methods=["GET"])])

    async def _handle(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        self.seen.append(Seen(time.monotonic(), task_id, request.headers.get("authorization")))
        answer = self._next_answer(task_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if answer.hang:
                await self.released.wait()
        finally:
            self.in_flight -= 1
        return Response(answer.content, status_code=answer.status, media_type="application/json")

    def _next_answer(self, task_id: str) -> Answer:
        if self.failure_rate and self._random.random() < self.failure_rate:
            return self._random.choice(FAILURES)
        script = self.scripts.get(task_id)
        if not script:
            return NOT_FOUND
        return script.popleft() if len(script) > 1 else script[0]
