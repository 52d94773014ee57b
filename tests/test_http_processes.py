"""With `RELAY_HTTP_PROCESSES`, polls' requests and webhooks go out from processes of the
relay's own: the relay keeps everything else (signing, retries, recording), and an HTTP
process's death costs no watch its one webhook."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from standardwebhooks import Webhook

from tests.conftest import SIGNING_SECRET, UPSTREAM_KEY, RelayFactory, Upstream
from tests.flaky_upstream import HANG, FlakyUpstream, task
from tests.processes import child_processes, ended, relay_process
from tests.receiver import Answer, Receiver

Hooks = tuple[Receiver, str]
HTTP_PROCESS = "app.http_processes"


async def test_each_poll_is_sent_with_its_watchs_own_upstream_key_or_else_the_relays(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    flaky.script("own-key", task("succeeded"))
    flaky.script("relay-key", task("failed"))
    async with start_relay(nebula_base_url=flaky.url, http_processes=2) as relay:
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


async def test_an_http_process_killed_mid_poll_is_replaced_and_the_watch_still_ends_once(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    flaky.script("slow", HANG, task("succeeded"))
    settings = {"nebula_base_url": flaky.url, "http_processes": 1, "upstream_timeout": 30}
    async with start_relay(**settings) as relay:
        watch = await relay.register("slow", callback)
        async with asyncio.timeout(20):
            while not flaky.requests_for("slow"):  # noqa: ASYNC110 (nothing to wait on)
                await asyncio.sleep(0.05)
        [first] = child_processes(os.getpid(), HTTP_PROCESS)
        os.kill(first, signal.SIGKILL)
        [hook] = await hooks.wait_for(1, within=20)
        [second] = child_processes(os.getpid(), HTTP_PROCESS)
        done = await relay.wait_for_state(watch["id"], "completed")

    assert second != first
    assert await ended(second)  # and it ends with the relay
    assert Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)["type"] == "task.succeeded"
    assert len(flaky.requests_for("slow")) == 2
    assert done["event"]["attempts"] == 1
    await asyncio.sleep(0.5)
    assert len(hooks.received) == 1


async def test_http_processes_end_with_the_relay_even_when_it_is_killed(
    upstream: Upstream, receiver: Hooks, database_url: str, tmp_path: Path
) -> None:
    hooks, callback = receiver
    async with relay_process(
        database_url, upstream, tmp_path / "relay.log", RELAY_HTTP_PROCESSES="2"
    ) as (http, process):
        children = child_processes(process.pid, HTTP_PROCESS)
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


async def test_webhooks_go_out_from_the_http_processes_and_every_answer_is_recorded(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """What the relay keeps of each answer crosses back from the process: the status, the
    excerpt (NUL bytes replaced), the error, and a `Retry-After` that is then obeyed."""
    hooks, callback = receiver
    hooks.answer_next(
        500,
        Answer(503, {"retry-after": "1"}, body=b"busy\x00now"),
        Answer(204, delay=2.0),
        Answer(200, body=b"thanks"),
    )
    async with start_relay(http_processes=1, delivery_timeout=0.5) as relay:
        watch = await relay.register(await upstream.submit(polls=1), callback)
        done = await relay.wait_for_state(watch["id"], "completed", within=20)
        log = await relay.attempts(watch["id"])

    assert [(a["status_code"], a["error"]) for a in log] == [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (None, "timeout"),
        (200, None),
    ]
    assert [a["response_excerpt"] for a in log] == ["answer 500", "busy\ufffdnow", None, "thanks"]
    assert hooks.received[2].at - hooks.received[1].at >= 1.0
    assert done["event"]["attempts"] == 4
    ids = {hook.headers["webhook-id"] for hook in hooks.received}
    assert len(ids) == 1
    assert Webhook(SIGNING_SECRET).verify(hooks.received[-1].body, hooks.received[-1].headers)


async def test_an_http_process_killed_with_a_webhook_in_hand_costs_a_retry_not_the_webhook(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """Whether the receiver got it is unknown: the attempt is a connection error and the same
    webhook (same id, for the receiver to tell) goes out again on the retry schedule."""
    hooks, callback = receiver
    hooks.answer_next(Answer(204, delay=30))
    async with start_relay(http_processes=1, delivery_timeout=60) as relay:
        watch = await relay.register(await upstream.submit(polls=1), callback)
        await hooks.wait_for(1, within=20)
        [process] = child_processes(os.getpid(), HTTP_PROCESS)
        os.kill(process, signal.SIGKILL)
        done = await relay.wait_for_state(watch["id"], "completed", within=20)
        log = await relay.attempts(watch["id"])

    assert log[0]["status_code"] is None
    assert log[0]["error"].startswith("connection error: the HTTP process exited")
    assert (log[-1]["status_code"], done["event"]["attempts"]) == (204, 2)
    first, second = hooks.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
