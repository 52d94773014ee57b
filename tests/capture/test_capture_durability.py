"""A relay killed in the middle of a capture resumes it after restart and never serves a part."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.conftest import SIGNING_SECRET, RelayFactory
from tests.flaky_upstream import FlakyUpstream, task
from tests.processes import child_processes, ended, relay_process
from tests.receiver import Receiver
from tests.servers import serve

Hooks = tuple[Receiver, str]

#: What the relay's capture process runs.
WORKER = "app.capture.worker"
VIDEO = os.urandom(2 * 1024 * 1024)
CHUNK = 64 * 1024


class SlowFiles:
    """Serves `VIDEO`: the first download trickles (long enough to be killed during), later
    ones at full speed."""

    def __init__(self) -> None:
        self.downloads = 0
        self.first_started = asyncio.Event()
        self.finished = False

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v.mp4", self._serve)])

    async def _serve(self, request: Request) -> StreamingResponse:
        self.downloads += 1
        slow = self.downloads == 1

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(VIDEO), CHUNK):
                if slow:
                    self.first_started.set()
                    await asyncio.sleep(0.1)
                yield VIDEO[start : start + CHUNK]
            self.finished = True

        headers = {"content-length": str(len(VIDEO))}
        return StreamingResponse(body(), media_type="video/mp4", headers=headers)


async def test_a_relay_killed_mid_capture_resumes_it_and_never_serves_a_partial_file(
    flaky: FlakyUpstream, receiver: Hooks, database_url: str, tmp_path: Path
) -> None:
    hooks, callback = receiver
    files = SlowFiles()
    log = tmp_path / "relay.log"
    async with serve(files.app) as files_url:
        flaky.script("video_slow", task("succeeded", url=f"{files_url}/v.mp4"))
        async with relay_process(database_url, flaky, log) as (http, process):
            watch = (
                await http.post(
                    "/v1/watches", json={"task_id": "video_slow", "callback_url": callback}
                )
            ).json()
            await asyncio.wait_for(files.first_started.wait(), 10)
            await asyncio.sleep(0.3)
            [worker] = child_processes(process.pid, WORKER)
            process.send_signal(signal.SIGKILL)
            await process.wait()

        assert await ended(worker)  # the capture process does not outlive the relay

        stored = tmp_path / "files" / "videos" / f"{watch['id']}.mp4"
        assert not stored.exists()  # a part, if any, was never put where it is served from
        assert hooks.received == []

        # On default settings: the dead process's capture lease is short (it was renewed while
        # the download ran), so the capture is taken up again within seconds.
        async with relay_process(database_url, flaky, log) as (http, _):
            [hook] = await hooks.wait_for(1, within=30)
            body = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
            served = await http.get(body["data"]["url"])
            state = (await http.get(f"/v1/watches/{watch['id']}")).json()

    video = body["data"]["video"]
    assert video["sha256"] == hashlib.sha256(VIDEO).hexdigest()
    assert video["size_bytes"] == len(VIDEO)
    assert served.content == VIDEO
    assert files.downloads == 2
    assert state["capture"]["state"] == "stored"
    assert stored.read_bytes() == VIDEO


async def test_a_watch_cancelled_while_its_result_is_captured_sends_nothing_and_keeps_no_file(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks, tmp_path: Path
) -> None:
    hooks, callback = receiver
    files = SlowFiles()
    async with serve(files.app) as files_url, start_relay(nebula_base_url=flaky.url) as relay:
        flaky.script("video_slow", task("succeeded", url=f"{files_url}/v.mp4"))
        watch = await relay.register("video_slow", callback)
        await asyncio.wait_for(files.first_started.wait(), 10)
        cancelled = await relay.http.delete(f"/v1/watches/{watch['id']}")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"

        async with asyncio.timeout(15):
            while files.downloads == 1 and not files.finished:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        after = await relay.get(watch["id"])

    assert hooks.received == []
    assert after["state"] == "cancelled"
    assert after["capture"]["state"] == "failed"
    assert after["capture"]["error"]["code"] == "cancelled"
    assert not (tmp_path / "files" / "videos" / f"{watch['id']}.mp4").exists()


async def test_a_download_that_trickles_past_the_request_timeout_is_cut_off_and_tried_again(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    files = SlowFiles()
    settings = {"nebula_base_url": flaky.url, "capture_request_timeout": 1.0}
    async with serve(files.app) as files_url, start_relay(**settings) as relay:
        flaky.script("video_slow", task("succeeded", url=f"{files_url}/v.mp4"))
        watch = await relay.register("video_slow", callback)
        [hook] = await hooks.wait_for(1, within=20)
        capture = (await relay.get(watch["id"]))["capture"]

    body = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
    assert body["data"]["video"]["sha256"] == hashlib.sha256(VIDEO).hexdigest()
    assert files.downloads == 2
    assert capture["state"] == "stored"


async def test_a_capture_process_that_dies_mid_download_is_replaced_and_the_capture_tried_again(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    files = SlowFiles()
    settings = {"nebula_base_url": flaky.url, "capture_process": True}
    async with serve(files.app) as files_url, start_relay(**settings) as relay:
        flaky.script("video_slow", task("succeeded", url=f"{files_url}/v.mp4"))
        watch = await relay.register("video_slow", callback)
        await asyncio.wait_for(files.first_started.wait(), 10)
        [first] = child_processes(os.getpid(), WORKER)
        os.kill(first, signal.SIGKILL)
        [hook] = await hooks.wait_for(1, within=20)
        capture = (await relay.get(watch["id"]))["capture"]
        [second] = child_processes(os.getpid(), WORKER)

    assert second != first
    assert await ended(second)  # and it ends with the relay
    body = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
    assert body["data"]["video"]["sha256"] == hashlib.sha256(VIDEO).hexdigest()
    assert files.downloads == 2
    assert capture["state"] == "stored"


async def test_signals_meant_for_the_whole_service_leave_the_capture_to_the_relay(
    flaky: FlakyUpstream, receiver: Hooks, database_url: str, tmp_path: Path
) -> None:
    """Ctrl-C reaches every process of the terminal's group, and a service manager may signal
    every process of the service: the capture process keeps on, and the relay decides."""
    hooks, callback = receiver
    files = SlowFiles()
    async with serve(files.app) as files_url:
        flaky.script("video_slow", task("succeeded", url=f"{files_url}/v.mp4"))
        async with relay_process(database_url, flaky, tmp_path / "relay.log") as (http, process):
            await http.post("/v1/watches", json={"task_id": "video_slow", "callback_url": callback})
            await asyncio.wait_for(files.first_started.wait(), 10)
            [worker] = child_processes(process.pid, WORKER)
            os.kill(worker, signal.SIGINT)
            os.kill(worker, signal.SIGTERM)
            [hook] = await hooks.wait_for(1, within=20)

    body = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
    assert body["data"]["video"]["sha256"] == hashlib.sha256(VIDEO).hexdigest()
    assert files.downloads == 1  # the first download was not cut short
    assert await ended(worker)
