"""With RELAY_SIMULATOR=true the relay serves the simulated upstream and polls it over HTTP;
`python -m app trigger` exercises a receiver with it, and the simulator also runs on its own."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.devkit import mounted_simulator
from app.devkit.simulator import video_digest
from app.main import create_app
from app.settings import Settings
from tests.commands import command_environment, run_app_command, running, wait_until_serving
from tests.conftest import API_KEY, SIGNING_SECRET, UPSTREAM_KEY, RelayClient, Upstream
from tests.receiver import Receiver
from tests.servers import free_port, serve

Hooks = tuple[Receiver, str]


@pytest.fixture(autouse=True)
def no_upstream_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay polls its own simulator only when no upstream is configured."""
    monkeypatch.delenv("NEBULA_BASE_URL", raising=False)
    monkeypatch.delenv("NEBULA_API_KEY", raising=False)


@asynccontextmanager
async def relay_with_simulator(tmp_path: Path, **overrides: Any) -> AsyncIterator[RelayClient]:
    values: dict[str, Any] = {
        "simulator": True,
        "database_url": f"sqlite:///{tmp_path / 'relay.db'}",
        "api_key": API_KEY,
        "signing_secret": SIGNING_SECRET,
        "poll_interval": 0.1,
        "tick_interval": 0.05,
        "allow_private_callbacks": True,
        "shutdown_grace": 2,
        "storage_dir": str(tmp_path / "files"),
    }
    settings = Settings(_env_file=None, **{**values, **overrides})
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
    ):
        yield RelayClient(http, settings)


async def test_the_relay_serves_the_simulator_and_polls_it_over_http(
    tmp_path: Path, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with relay_with_simulator(tmp_path) as relay:
        submitted = await relay.http.post(
            "/simulator/v1/video/generations",
            json={"model": "wan2.5-t2v-preview", "prompt": "a cat", "simulation": {"polls": 3}},
            headers={"Authorization": f"Bearer {mounted_simulator.API_KEY}"},
        )
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["task_id"]
        watch = await relay.register(task_id, callback)
        done = await relay.wait_for_state(watch["id"], "completed")
        [hook] = await hooks.wait_for(1)
        event = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
        video = await relay.http.get(event["data"]["url"])

    assert done["poll_count"] == 3
    assert event["type"] == "task.succeeded"
    # The simulator's result link names the relay itself, so the relay could capture from it.
    source_url = event["data"]["video"]["source_url"]
    assert source_url.startswith(f"{relay.http.base_url}/simulator/simulator-files/")
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert hashlib.sha256(video.content).hexdigest() == video_digest(task_id).sha256
    assert event["data"]["video"]["sha256"] == video_digest(task_id).sha256


async def test_the_simulator_stays_out_of_the_relays_api_document(tmp_path: Path) -> None:
    async with relay_with_simulator(tmp_path) as relay:
        spec = (await relay.http.get("/openapi.json")).json()

    committed = json.loads((Path(__file__).parents[2] / "openapi/openapi.json").read_text())
    assert spec == committed


async def test_an_upstream_set_explicitly_is_polled_instead(
    tmp_path: Path, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    task_id = await upstream.submit(polls=1)

    async with relay_with_simulator(
        tmp_path, nebula_base_url=upstream.url, nebula_api_key=UPSTREAM_KEY
    ) as relay:
        watch = await relay.register(task_id, callback)
        await relay.wait_for_state(watch["id"], "completed")


async def test_trigger_submits_a_task_and_watches_it_until_its_webhook_arrives(
    tmp_path: Path, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with relay_with_simulator(tmp_path) as relay:
        status, printed = await run_app_command(
            "trigger", "--outcome", "failed", "--failure-reason", "No cats allowed",
            "--model", "sora-2", "--duration", "0", "--callback", callback,
            "--relay-url", str(relay.http.base_url), "--api-key", API_KEY,
            env=command_environment(), cwd=tmp_path,
        )  # fmt: skip
        assert status == 0, printed
        [watch_id] = re.findall(r"^watch (wat_\w+) registered", printed, re.MULTILINE)
        assert f"see it in the console: {relay.http.base_url}/console/watches/{watch_id}" in printed
        watch = await relay.wait_for_state(watch_id, "completed")
        [hook] = await hooks.wait_for(1)

    event = Webhook(SIGNING_SECRET).verify(hook.body, hook.headers)
    assert event["type"] == "task.failed"
    assert event["data"]["watch_id"] == watch_id
    assert event["data"]["task_id"].startswith("video_")
    assert event["data"]["error"]["message"] == "No cats allowed"
    assert watch["callback_url"] == callback


async def test_trigger_without_a_simulator_says_so(tmp_path: Path, receiver: Hooks) -> None:
    _, callback = receiver
    async with relay_with_simulator(tmp_path, simulator=False) as relay:
        status, printed = await run_app_command(
            "trigger", "--callback", callback, "--relay-url", str(relay.http.base_url),
            env=command_environment(RELAY_API_KEY=API_KEY), cwd=tmp_path,
        )  # fmt: skip

    assert status == 1
    assert "is the relay running with RELAY_SIMULATOR=true?" in printed


async def test_the_simulator_runs_as_its_own_process(tmp_path: Path) -> None:
    port = free_port()
    command = (sys.executable, "-m", "app", "simulator", "--port", str(port))
    async with running(*command, env=command_environment(), cwd=tmp_path):
        url = f"http://127.0.0.1:{port}"
        await wait_until_serving(url)
        task_id = await Upstream(url).submit(polls=1)
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.get(
                f"/v1/video/generations/{task_id}",
                headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
            )

    assert answer.json()["status"] == "succeeded"


async def test_until_its_first_request_the_relay_does_not_know_where_to_poll_itself() -> None:
    request = httpx.Request("GET", f"{mounted_simulator.BASE_URL}/v1/video/generations/some-task")

    with pytest.raises(httpx.ConnectError, match="learned from its first request"):
        mounted_simulator.ServedAddress().point_here(request)
