"""The relay's outgoing HTTP sent from processes of its own (`RELAY_HTTP_PROCESSES`), over
`app.workers`: the polls' requests to the upstream, and the webhooks.

One interpreter runs one thing at a time, and at 10,000 watches half of the relay's event loop
goes to the upstream's exchanges: building each request, handing it to the HTTP client, reading
and parsing the answer (docs/performance.md); when many tasks end together, a webhook's POST
costs as much again. In HTTP processes that work moves to other cores. The relay keeps all the
rest (claims, leases, the schedule, the circuit, rate budgets, sizing, signing, retries,
metrics and recording), so every guarantee of polling and delivery stays where it was, and only
a task id and a parsed snapshot, or a signed webhook and the gist of its answer, cross the
socket.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from app import logs, transport, workers
from app.delivery import pinning
from app.delivery.posting import Answer, TransportPoster
from app.settings import Settings
from app.upstream.client import UpstreamClient, UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import TaskError, TaskSnapshot, TaskStatus

#: An upstream error as it crosses the socket: its kind, message and HTTP status.
_Error = tuple[str, str, int | None]
#: A snapshot as it crosses the socket: its fields in order, the status and error as plain
#: values. Pickle takes a tuple of them in a tenth of the time it takes the dataclass (whose
#: enum and slots it reconstructs through generic reductions), twice for every poll.
_Packed = tuple[Any, ...]

#: The two kinds of request a process takes, first in each request's tuple.
_FETCH = "fetch"
_POST = "post"


class HttpProcesses:
    """Asks the upstream as `UpstreamClient.fetch` does, and posts webhooks as `TransportPoster`
    does, from `count` worker processes; each request goes to the one with the fewest in hand.

    :param max_connections: the polls' connections to the upstream, shared out among them.
    """

    def __init__(self, settings: Settings, *, count: int, max_connections: int) -> None:
        share = math.ceil(max_connections / count)
        self._workers = [
            workers.WorkerProcess(__name__, (settings, share), name="HTTP process")
            for _ in range(count)
        ]
        self._api_key = settings.upstream_key

    def key_for(self, api_key: str | None) -> str | None:
        return api_key or self._api_key

    async def start(self) -> None:
        await asyncio.gather(*(worker.start() for worker in self._workers))

    async def ready(self) -> None:
        """Once every process takes requests: polls sent before would wait for them, and then
        all go at once, past any rate budget."""
        await asyncio.gather(*(worker.ready() for worker in self._workers))

    async def fetch(self, task_id: str, *, api_key: str | None = None) -> TaskSnapshot:
        try:
            ok, answer = await self._ask((_FETCH, task_id, api_key))
        except workers.WorkerExited as exc:
            raise UpstreamError(UpstreamErrorKind.CONNECTION, str(exc)) from None
        if ok:
            return _unpacked(answer)
        kind, message, status = answer
        raise UpstreamError(UpstreamErrorKind(kind), message, status)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """:raises workers.WorkerExited: the process died with the webhook in hand, whether
        or not it reached its receiver."""
        return Answer(*await self._ask((_POST, url, headers, body)))

    async def aclose(self) -> None:
        await asyncio.gather(*(worker.aclose() for worker in self._workers))

    async def _ask(self, request: tuple[Any, ...]) -> Any:
        worker = min(self._workers, key=lambda worker: worker.in_flight)
        return await worker.ask(request)


@asynccontextmanager
async def _serving(greeting: tuple[Settings, int]) -> AsyncIterator[workers.Handler]:
    settings, max_connections = greeting
    logs.configure(settings)
    pool = transport.create_transport(max_connections=max_connections)
    client = UpstreamClient.from_settings(pool, settings, timeout=settings.upstream_timeout)
    callbacks_transport = pinning.create_callback_transport(settings)
    poster = TransportPoster(callbacks_transport, timeout=settings.delivery_timeout)

    async def fetch(task_id: str, api_key: str | None) -> tuple[bool, _Packed | _Error]:
        try:
            return True, _packed(await client.fetch(task_id, api_key=api_key))
        except UpstreamError as exc:
            return False, (exc.kind.value, exc.args[0], exc.status_code)

    async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
        # A NamedTuple would cross as its class and fields; a plain tuple is cheaper to pickle.
        return tuple(await poster.post(url, headers, body))

    kinds: dict[str, Callable[..., Awaitable[Any]]] = {_FETCH: fetch, _POST: post}

    async def handle(request: tuple[Any, ...]) -> Any:
        kind, *arguments = request
        return await kinds[kind](*arguments)

    try:
        yield handle
    finally:
        await pool.aclose()
        await callbacks_transport.aclose()


def _packed(snapshot: TaskSnapshot) -> _Packed:
    error = snapshot.error
    return (
        snapshot.status.value,
        snapshot.upstream_status,
        snapshot.progress,
        snapshot.url,
        None if error is None else (error.code, error.message),
        snapshot.body,
        snapshot.finished_at,
    )


def _unpacked(packed: _Packed) -> TaskSnapshot:
    status, upstream_status, progress, url, error, body, finished_at = packed
    return TaskSnapshot(
        status=TaskStatus(status),
        upstream_status=upstream_status,
        progress=progress,
        url=url,
        error=None if error is None else TaskError(*error),
        body=body,
        finished_at=finished_at,
    )


if __name__ == "__main__":
    workers.serve(_serving)
