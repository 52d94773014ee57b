"""A relay asked to stop is gone within `RELAY_SHUTDOWN_GRACE` plus a second, whatever hangs:
a receiver that never answers, an upstream that never answers, a download that never ends, and
(with `serve`) an HTTP request of its own API still open."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.flaky_upstream import HANG, FlakyUpstream, task
from tests.processes import SERVE, UVICORN, relay_process
from tests.servers import serve

GRACE = 2.0
#: What the process may take past the grace to exit: a second on an idle machine, more on one
#: busy with the suite's other workers.
EXIT_SLACK = 2.0
#: Far longer than the grace, so that only the shutdown can end what hangs.
LONG = {
    "RELAY_SHUTDOWN_GRACE": str(GRACE),
    "RELAY_DELIVERY_TIMEOUT": "60",
    "RELAY_UPSTREAM_TIMEOUT": "60",
    "RELAY_CAPTURE_REQUEST_TIMEOUT": "600",
}


class SilentReceiver:
    """Accepts connections, reads what comes, and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._arrived = asyncio.Condition()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._arrived:
            self.connections += 1
            self._arrived.notify_all()
        await reader.read()  # until the sender gives up
        writer.close()

    async def wait_for(self, connections: int) -> None:
        async with asyncio.timeout(20), self._arrived:
            await self._arrived.wait_for(lambda: self.connections >= connections)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"http://127.0.0.1:{port}/hooks"


class EndlessFile:
    """A video that never finishes downloading."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def _serve(self, _: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            self.started.set()
            while True:
                yield b"\0" * 1024
                await asyncio.sleep(0.05)

        return StreamingResponse(body(), media_type="video/mp4")

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/endless.mp4", self._serve)])


async def stop_and_time(process: asyncio.subprocess.Process) -> float:
    """Seconds from SIGTERM until the process has exited."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 60)
    return time.monotonic() - started


@pytest.mark.parametrize("launch", [SERVE, UVICORN], ids=["serve", "uvicorn"])
async def test_a_relay_with_work_that_never_ends_exits_within_the_grace_after_sigterm(
    launch: tuple[str, ...], flaky: FlakyUpstream, database_url: str, tmp_path: Path
) -> None:
    receiver, file = SilentReceiver(), EndlessFile()
    async with receiver.serving() as callback, serve(file.app) as files:
        flaky.script("video_unanswered", HANG)
        flaky.script("video_failed", task("failed"))
        flaky.script("video_endless", task("succeeded", url=f"{files}/endless.mp4"))
        log = tmp_path / "relay.log"
        async with relay_process(database_url, flaky, log, launch, **LONG) as (http, process):
            for task_id in ("video_unanswered", "video_failed", "video_endless"):
                registered = await http.post(
                    "/v1/watches", json={"task_id": task_id, "callback_url": callback}
                )
                assert registered.status_code == 201, registered.text
            await receiver.wait_for(1)  # the webhook of the failed task, in flight
            await asyncio.wait_for(file.started.wait(), 20)
            async with asyncio.timeout(20):
                while not flaky.in_flight:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            elapsed = await stop_and_time(process)

    assert "Application shutdown complete" in log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert elapsed <= GRACE + EXIT_SLACK, f"{elapsed:.2f} s after SIGTERM\n{log.read_text()}"


async def test_serve_cuts_an_api_request_still_open_within_the_same_grace(
    flaky: FlakyUpstream, database_url: str, tmp_path: Path
) -> None:
    """A registration that proves its callback waits for the callback's answer (5 s at most),
    longer than the grace: `serve` counts the grace from the signal for it and for the work in
    flight alike."""
    receiver = SilentReceiver()
    async with receiver.serving() as callback:
        flaky.script("video_failed", task("failed"))
        log = tmp_path / "relay.log"
        async with relay_process(database_url, flaky, log, SERVE, **LONG) as (http, process):
            registered = await http.post(
                "/v1/watches", json={"task_id": "video_failed", "callback_url": callback}
            )
            assert registered.status_code == 201, registered.text
            await receiver.wait_for(1)  # the webhook, in flight
            proving = asyncio.create_task(
                http.post(
                    "/v1/watches",
                    json={"task_id": "video_2", "callback_url": callback, "verify_callback": True},
                    timeout=30,
                )
            )
            await receiver.wait_for(2)  # the challenge, in flight

            elapsed = await stop_and_time(process)
            with contextlib.suppress(httpx.HTTPError):
                await proving

    assert "Application shutdown complete" in log.read_text()
    assert elapsed <= GRACE + EXIT_SLACK, f"{elapsed:.2f} s after SIGTERM\n{log.read_text()}"
