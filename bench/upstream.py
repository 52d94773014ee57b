"""The fake upstream: `GET /v1/video/generations/{task_id}` in the documented flat shape.

Served by uvicorn as a separate process (`uvicorn bench.upstream:app`). Each task's course is
read from its id (see `bench.tasks`). It records when every poll of every task arrived and when
it first answered a terminal status; `GET /_stats` returns those records, `GET /_stats/since?t=`
the first poll after a time (to time a restart), `GET /_ping` a small document for the raw
client-loop measurement.

With `BENCH_RESULT_BYTES` set (the capture modes), a succeeded task's `url` is a link to this
server, `GET /files/{task_id}.mp4`, which streams that many bytes (`bench.results`) as
`video/mp4`; it records when each download started and ended. Without it, the `url` is a link
nobody can download, as before capture, for runs with `RELAY_CAPTURE=false`.

With `BENCH_UPSTREAM_LATENCY` (seconds), every task query is answered that long after it came, as
by an upstream across an ocean; its arrival is what the records keep.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from bench import results, tasks
from bench.asgi import PerSecond, Receive, Scope, Send, header, respond, respond_json

PREFIX = "/v1/video/generations/"
FILES = "/files/"
#: The size of every succeeded task's result; 0: results are links nobody downloads.
RESULT_BYTES = int(os.environ.get("BENCH_RESULT_BYTES") or 0)
#: Seconds every task query waits before it is answered, as a distant upstream's would.
LATENCY = float(os.environ.get("BENCH_UPSTREAM_LATENCY") or 0)
_EXPECTED_AUTH = f"Bearer {os.environ.get('BENCH_UPSTREAM_KEY', 'sk-bench')}".encode()
_PING = b'{"task_id":"ping","status":"queued","format":"mp4"}'
_FAILURE = {"code": 400, "message": "Prompt contains inappropriate content"}


@dataclass(slots=True)
class _Task:
    outcome: str
    ends_at: float
    polls: list[float] = field(default_factory=list)
    terminal_at: float | None = None


_tasks: dict[str, _Task] = {}
_poll_times: list[float] = []
_per_second = PerSecond()
#: Each download of a result: [task id, started, ended, bytes sent].
_downloads: list[list[object]] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path.startswith(PREFIX):
        await _query(scope, path[len(PREFIX) :], send)
    elif path.startswith(FILES) and scope["method"] == "GET":
        await _download(path[len(FILES) :].removesuffix(".mp4"), send)
    elif path == "/_ping":
        await respond(send, 200, _PING)
    elif path == "/_stats":
        await respond_json(send, 200, _stats())
    elif path == "/_stats/since":
        query = parse_qs(scope["query_string"].decode())
        await respond_json(send, 200, _since(float(query.get("t", ["0"])[0])))
    else:
        await respond(send, 404)


async def _query(scope: Scope, task_id: str, send: Send) -> None:
    now = time.time()
    if header(scope, b"authorization") != _EXPECTED_AUTH:
        await respond_json(send, 401, {"error": {"message": "invalid api key"}})
        return
    task = _tasks.get(task_id) or _new_task(task_id, now)
    if task is None:
        await respond_json(send, 400, {"code": "task_not_exist", "message": "task_not_exist"})
        return
    task.polls.append(now)
    _poll_times.append(now)
    _per_second.add(now)
    body: dict[str, object] = {"task_id": task_id, "format": "mp4"}
    if now >= task.ends_at:
        if task.terminal_at is None:
            task.terminal_at = now
        body["status"] = task.outcome
        if task.outcome == tasks.SUCCEEDED:
            body["url"] = _result_url(scope, task_id)
        else:
            body["error"] = _FAILURE
    else:
        body["status"] = "queued" if len(task.polls) == 1 else "in_progress"
    if LATENCY:
        await asyncio.sleep(LATENCY)
    await respond(send, 200, json.dumps(body, separators=(",", ":")).encode())


def _result_url(scope: Scope, task_id: str) -> str:
    if not RESULT_BYTES:
        return f"https://videos.bench.invalid/{task_id}.mp4"
    host, port = scope["server"]
    return f"http://{host}:{port}{FILES}{task_id}.mp4"


async def _download(task_id: str, send: Send) -> None:
    """Stream the result a block at a time: the server's flow control holds each send until
    the client has taken the one before, so no more than a block or two is held here."""
    task = _tasks.get(task_id)
    if not RESULT_BYTES or task is None or task.terminal_at is None:
        await respond(send, 404)
        return
    record: list[object] = [task_id, time.time(), None, 0]
    _downloads.append(record)
    headers = [
        (b"content-type", b"video/mp4"),
        (b"content-length", str(RESULT_BYTES).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    sent = 0
    for chunk in results.chunks(RESULT_BYTES):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += len(chunk)
        record[3] = sent
    await send({"type": "http.response.body", "body": b""})
    record[2] = time.time()


def _new_task(task_id: str, now: float) -> _Task | None:
    course = tasks.parse(task_id)
    if course is None:
        return None
    if not course.ends:
        ends_at = math.inf
    elif course.at is not None:
        ends_at = course.at
    else:
        ends_at = now + (course.seconds or 0.0)
    task = _Task(course.outcome, ends_at)
    _tasks[task_id] = task
    return task


def _stats() -> dict[str, object]:
    return {
        "requests": len(_poll_times),
        "busiest_second": _per_second.busiest,
        "per_second": _per_second.counts,
        "downloads": _downloads,
        "tasks": {
            task_id: {"polls": task.polls, "terminal_at": task.terminal_at}
            for task_id, task in _tasks.items()
        },
    }


def _since(t: float) -> dict[str, object]:
    """Polls are appended in time order, so the first one after `t` is a bisection away."""
    index = bisect_right(_poll_times, t)
    first = _poll_times[index] if index < len(_poll_times) else None
    return {
        "first_poll": first,
        "polls": len(_poll_times) - index,
        "requests": len(_poll_times),
        "downloads": len(_downloads),
    }
