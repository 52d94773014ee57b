"""Nothing is lost when the relay process is killed: state lives in the database, not in memory."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from standardwebhooks import Webhook

from app.relay import running
from tests.conftest import SIGNING_SECRET, RelayFactory, Upstream, relay_settings
from tests.processes import relay_process
from tests.receiver import Answer, Receiver

Hooks = tuple[Receiver, str]
#: Retries quick enough for a test, and enough of them that no webhook is given up on before the
#: kill, however slowly a busy machine gets there (ten of 0.2 s once ran out under load in CI).
PATIENT = {"RELAY_RETRY_SCHEDULE": ",".join(["0.2"] * 200)}


async def test_a_killed_relay_resumes_every_watch_and_webhook_after_restart(
    upstream: Upstream, receiver: Hooks, database_url: str, tmp_path: Path
) -> None:
    hooks, callback = receiver
    hooks.default_status = 503  # webhooks pile up in the outbox, undelivered, until the kill
    log = tmp_path / "relay.log"
    tasks = [await upstream.submit(polls=polls) for polls in (1, 2, 3, 5, 8, 13, 21, 34)]
    tasks += [await upstream.submit(polls=1, outcome="failed")]

    async with relay_process(database_url, upstream, log, **PATIENT) as (http, process):
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
    async with relay_process(database_url, upstream, log, **PATIENT) as (http, _):
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


async def test_a_relay_asked_for_full_synchronous_commits_makes_sqlite_wait_for_the_disk(
    upstream: Upstream, database_url: str
) -> None:
    """`RELAY_SQLITE_SYNCHRONOUS=full`: SQLite's `synchronous=FULL` (2) on the relay's
    connection; PostgreSQL, whose server decides, runs as ever."""
    settings = relay_settings(database_url, upstream.url, sqlite_synchronous="full")

    async with running(settings) as relay:
        answer = await relay.db.run(
            lambda connection: connection.exec_driver_sql(
                "PRAGMA synchronous"
                if connection.dialect.name == "sqlite"
                else "SELECT current_setting('synchronous_commit')"
            ).scalar()
        )

    assert answer == (2 if database_url.startswith("sqlite") else "on")
