"""`watch` registers a watch with a running relay, as an app would, and prints it as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands import command_environment, run_app_command
from tests.conftest import API_KEY, RelayFactory, Upstream


async def test_a_watch_registered_from_the_command_line_is_printed_as_the_relay_keeps_it(
    start_relay: RelayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    task_id = await upstream.submit(polls=1000)
    env = command_environment(RELAY_API_KEY=API_KEY)
    async with start_relay() as relay:
        relay_url = str(relay.http.base_url)
        status, printed = await run_app_command(
            "watch", task_id,
            "--callback", "http://127.0.0.1:9/hooks",
            "--relay", relay_url,
            "--metadata", '{"order": 42}',
            "--event", "task.updated",
            "--timeout", "600",
            "--poll-interval", "2",
            "--idempotency-key", "order-42",
            env=env, cwd=tmp_path,
        )  # fmt: skip
        assert status == 0, printed
        watch = json.loads(printed)
        kept = await relay.get(watch["id"])
        status_again, printed_again = await run_app_command(
            "watch", task_id, "--callback", "http://127.0.0.1:9/hooks", "--relay-url", relay_url,
            env=env, cwd=tmp_path,
        )  # fmt: skip

    assert watch == {**kept, "updated_at": watch["updated_at"]}
    assert watch["task_id"] == task_id
    assert watch["callback_url"] == "http://127.0.0.1:9/hooks"
    assert watch["metadata"] == {"order": 42}
    assert "task.updated" in watch["events"]
    assert watch["poll_interval"] == 2
    assert watch["state"] == "active"
    assert status_again == 0
    assert json.loads(printed_again)["id"] == watch["id"], "the same task and callback: one watch"


async def test_watch_says_why_the_relay_refused(start_relay: RelayFactory, tmp_path: Path) -> None:
    async with start_relay() as relay:
        relay_url = str(relay.http.base_url)
        refused = await run_app_command(
            "watch", "video_1", "--callback", "ftp://example.com/hooks", "--relay", relay_url,
            env=command_environment(RELAY_API_KEY=API_KEY), cwd=tmp_path,
        )  # fmt: skip
        wrong_key = await run_app_command(
            "watch", "video_1", "--callback", "http://127.0.0.1:9/hooks", "--relay", relay_url,
            "--api-key", "not-the-key",
            env=command_environment(), cwd=tmp_path,
        )  # fmt: skip
    no_key = await run_app_command(
        "watch", "video_1", "--callback", "http://127.0.0.1:9/hooks",
        env=command_environment(), cwd=tmp_path,
    )  # fmt: skip
    not_json = await run_app_command(
        "watch", "video_1", "--callback", "http://127.0.0.1:9/hooks", "--metadata", "{order: 42}",
        env=command_environment(RELAY_API_KEY=API_KEY), cwd=tmp_path,
    )  # fmt: skip

    assert refused[0] == 1
    assert refused[1].startswith("error: the relay refused the watch with HTTP 422: ")
    assert "callback_url" in refused[1]
    assert wrong_key == (
        1,
        'error: the relay refused the watch with HTTP 401: {"detail":"invalid API key"}\n',
    )
    assert no_key == (
        1,
        "error: the relay's API key is needed: pass --api-key or set RELAY_API_KEY\n",
    )
    assert not_json[0] == 2
    assert "argument --metadata: not JSON" in not_json[1]
