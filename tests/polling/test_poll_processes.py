"""With `RELAY_POLL_PROCESSES`, polls' requests go out from processes of the relay's own: the
relay keeps everything else, and a poll process's death costs no watch its one webhook."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from standardwebhooks import Webhook

from tests.conftest import SIGNING_SECRET, UPSTREAM_KEY, RelayFactory, Upstream
from tests.flaky_upstream import HANG, FlakyUpstream, task
from tests.processes import child_processes, ended, relay_process
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
POLL_PROCESS = "app.upstream.processes"


async def test_each_poll_is_sent_with_its_watchs_own_upstream_key_or_else_the_relays(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    flaky.script("own-key", task("succeeded"))
    flaky.script("relay-key", task("failed"))
    async with start_relay(nebula_base_url=flaky.url, poll_processes=2) as relay:
        await relay.register("own-key", callback, upstream_api_key="sk-the-apps-own")
        await relay.register("relay-key", callback)
        hooks_in = await hooks.wait_for(2, within=20)

    assert {seen.authorization for seen in flaky.requests_for("own-key")} == {
        "Bearer sk-the-apps-own"
    }
    assert {seen.authorization for seen in flaky.requests_for("relay-key")} == {
        f"Bearer {UPSTREAM_KEY}"
    }
    kinds = {Webhook(SIGNING_SECRET).verify(h.body, h.headers)["type"] for h in hooks_in}
    assert kinds == {"task.succeeded", "task.failed"}


async def test_a_poll_process_killed_mid_request_is_replaced_and_the_watch_still_ends_once(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    flaky.script("slow", HANG, task("succeeded"))
    settings = {"nebula_base_url": flaky.url, "poll_processes": 1, "upstream_timeout": 30}
    async with start_relay(**settings) as relay:
        watch = await relay.register("slow", callback)
        async with asyncio.timeout(20):
            while not flaky.requests_for("slow"):  # noqa: ASYNC110 (nothing to wait on)
                await asyncio.sleep(0.05)
        [first] = child_processes(os.getpid(), POLL_PROCESS)
        os.kill(first, signal.SIGKILL)
        [hook] = await hooks.wait_for(1, within=20)
        [second] = child_processes(os.getpid(), POLL_PROCESS)
        done = await relay.wait_for_state(watch["id"], "completed")

    assert second != first
    assert await ended(second)  # and it ends with the relay
    assert Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)["type"] == "task.succeeded"
    assert len(flaky.requests_for("slow")) == 2
    assert done["event"]["attempts"] == 1
    await asyncio.sleep(0.5)
    assert len(hooks.received) == 1


async def test_poll_processes_end_with_the_relay_even_when_it_is_killed(
    upstream: Upstream, receiver: Hooks, database_url: str, tmp_path: Path
) -> None:
    hooks, callback = receiver
    async with relay_process(
        database_url, upstream, tmp_path / "relay.log", RELAY_POLL_PROCESSES="2"
    ) as (http, process):
        children = child_processes(process.pid, POLL_PROCESS)
        task_id = await upstream.submit(polls=2)
        watch = {"task_id": task_id, "callback_url": callback}
        response = await http.post("/v1/watches", json=watch)
        assert response.status_code == 201
        await hooks.wait_for(1, within=20)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    assert len(children) == 2
    for pid in children:
        assert await ended(pid)
