"""Nothing is lost when the relay process is killed: state lives in the database, not in memory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from standardwebhooks import Webhook

from tests.flaky_upstream import FlakyUpstream
from tests.conftest import API_KEY, SIGNING_SECRET, UPSTREAM_KEY, RelayFactory, Upstream
from tests.receiver import Answer, Receiver

Hooks = tuple[Receiver, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def relay_process(
    database_url: str, upstream: Upstream | FlakyUpstream, log: Path, **env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    """The relay as operators run it: `uvicorn app.main:app`, configured by the environment."""
    port = _free_port()
    env = {
        **os.environ,
        "RELAY_DATABASE_URL": database_url,
        "NEBULA_BASE_URL": upstream.url,
        "NEBULA_API_KEY": UPSTREAM_KEY,
        "RELAY_API_KEY": API_KEY,
        "RELAY_SIGNING_SECRET": SIGNING_SECRET,
        "RELAY_POLL_INTERVAL": "0.2",
        "RELAY_TICK_INTERVAL": "0.05",
        "RELAY_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
        "RELAY_RETRY_JITTER": "0",
        "RELAY_UPSTREAM_TIMEOUT": "1",
        "RELAY_DELIVERY_TIMEOUT": "1",
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
        "RELAY_STORAGE_DIR": str(log.parent / "files"),
        **env,
    }
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
            env=env, stdout=output, stderr=output,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            yield http, process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def test_a_killed_relay_resumes_every_watch_and_webhook_after_restart(
    upstream: Upstream, receiver: Hooks, database_url: str, tmp_path: Path
) -> None:
    hooks, callback = receiver
    hooks.default_status = 503  # webhooks pile up in the outbox, undelivered, until the kill
    log = tmp_path / "relay.log"
    tasks = [await upstream.submit(polls=polls) for polls in (1, 2, 3, 5, 8, 13, 21, 34)]
    tasks += [await upstream.submit(polls=1, outcome="failed")]

    async with relay_process(database_url, upstream, log) as (http, process):
        watch_ids = []
        for task_id in tasks:
            response = await http.post(
                "/v1/watches", json={"task_id": task_id, "callback_url": callback}
            )
            assert response.status_code == 201
            watch_ids.append(response.json()["id"])
        await hooks.wait_for(3)
        before = (await http.get("/v1/watches", params={"limit": 50})).json()["data"]
        process.send_signal(signal.SIGKILL)
        await process.wait()

    # Killed mid-flight: some tasks still being polled, some webhooks waiting for a retry.
    assert {"active", "notifying"} <= {watch["state"] for watch in before}
    hooks.default_status = 204
    async with relay_process(database_url, upstream, log) as (http, _):
        async with asyncio.timeout(40):
            while True:
                page = (await http.get("/v1/watches", params={"limit": 50})).json()["data"]
                if all(watch["state"] == "completed" for watch in page):
                    break
                await asyncio.sleep(0.1)

    assert len(page) == len(tasks)
    delivered: dict[str, set[str]] = {}
    for hook in hooks.received:
        body = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
        delivered.setdefault(body["data"]["watch_id"], set()).add(hook.headers["webhook-id"])
    assert set(delivered) == set(watch_ids)
    # However many times a webhook was sent, across the restart it kept one id.
    assert all(len(ids) == 1 for ids in delivered.values())
    by_watch = {watch["id"]: watch for watch in page}
    for watch_id, ids in delivered.items():
        assert by_watch[watch_id]["event"]["id"] in ids
    failures = [json.loads(h.body) for h in hooks.received if b"task.failed" in h.body]
    assert {f["data"]["task_id"] for f in failures} == {tasks[-1]}


async def test_a_stopping_relay_lets_a_delivery_in_flight_finish(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    hooks.answer_next(Answer(204, delay=1.0))
    async with start_relay(shutdown_grace=5) as relay:
        watch = await relay.register(await upstream.submit(polls=1), callback)
        await hooks.wait_for(1)
    # Stopped while the receiver was still answering: the answer was waited for and recorded.

    async with start_relay() as relay:
        done = await relay.get(watch["id"])
        await asyncio.sleep(0.5)
    assert done["state"] == "completed"
    assert done["event"]["attempts"] == 1
    assert len(hooks.received) == 1
