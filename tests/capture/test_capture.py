"""A succeeded task's result is captured once and served by the relay, whatever form the upstream
gave it in and however long the receiver takes to come back."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from standardwebhooks import Webhook

from app.capture.cleanup import FileCleanup
from app.capture.storage import FileStorage
from app.devkit.simulator import video_digest
from app.main import create_app
from app.metrics import Metrics
from app.settings import Settings
from app.store.database import open_database
from tests.conftest import API_KEY, SIGNING_SECRET, RelayClient, RelayFactory, Upstream
from tests.receiver import Receiver
from tests.servers import serve

Hooks = tuple[Receiver, str]

WAN = "wan2.5-t2v-preview"
VEO = "veo-3.0-fast-generate-001"
SORA = "sora-2"


async def final_webhook(hooks: Receiver, count: int = 1, within: float = 15.0) -> dict[str, Any]:
    received = await hooks.wait_for(count, within=within)
    body: dict[str, Any] = Webhook(SIGNING_SECRET).verify(received[-1].body, received[-1].headers)
    return body


async def fetch(url: str, **headers: str) -> httpx.Response:
    """As a receiver would: a bucket's link is a redirect to follow."""
    async with httpx.AsyncClient(follow_redirects=True) as http:
        return await http.get(url, headers=headers)


def assert_is_the_result(
    response: httpx.Response, video: dict[str, Any], task_id: str, size: int
) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("video/mp4")
    assert len(response.content) == video["size_bytes"] == size
    assert hashlib.sha256(response.content).hexdigest() == video["sha256"]
    assert video["sha256"] == video_digest(task_id, size).sha256


async def test_a_receiver_back_after_the_upstream_link_died_still_gets_a_working_link(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks, storage: dict[str, Any]
) -> None:
    hooks, callback = receiver
    hooks.answer_next(503, 503, 503)
    # The link lives long enough to be captured on a slow machine, and dies before the receiver
    # is back: the fourth attempt comes at least 3 s after the poll that saw success.
    async with start_relay(**storage, retry_schedule=(1.0, 1.0, 1.0, 1.0)) as relay:
        task_id = await upstream.submit(WAN, polls=1, video_bytes=300_000, link_ttl=2.0)
        await relay.register(task_id, callback)
        body = await final_webhook(hooks, count=4)

        video = body["data"]["video"]
        assert body["type"] == "task.succeeded"
        assert body["data"]["url"] == video["url"]
        assert video["source_url"].startswith(upstream.url)
        assert (await fetch(video["source_url"])).status_code == 403  # the upstream's is dead
        assert_is_the_result(await fetch(video["url"]), video, task_id, 300_000)


async def test_a_veo_data_uri_is_decoded_into_a_file_and_never_sent_in_the_webhook(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks, storage: dict[str, Any]
) -> None:
    hooks, callback = receiver
    async with start_relay(**storage) as relay:
        task_id = await upstream.submit(VEO, polls=1, video_bytes=200_000)
        await relay.register(task_id, callback)
        body = await final_webhook(hooks)

        video = body["data"]["video"]
        assert video["source_url"] is None
        assert b"base64," not in hooks.received[0].body
        assert_is_the_result(await fetch(video["url"]), video, task_id, 200_000)


async def test_a_sora_result_comes_through_the_download_api_even_after_it_failed_twice(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks, storage: dict[str, Any]
) -> None:
    hooks, callback = receiver
    async with start_relay(**storage) as relay:
        task_id = await upstream.submit(SORA, polls=1, video_bytes=150_000, download_failures=2)
        watch = await relay.register(task_id, callback)
        body = await final_webhook(hooks, within=20)

        video = body["data"]["video"]
        assert "capture_error" not in body["data"]
        assert_is_the_result(await fetch(video["url"]), video, task_id, 150_000)
        capture = (await relay.get(watch["id"]))["capture"]
        assert capture["state"] == "stored"
        assert capture["sha256"] == video["sha256"]


async def test_range_requests_get_the_bytes_asked_for(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks, storage: dict[str, Any]
) -> None:
    hooks, callback = receiver
    async with start_relay(**storage) as relay:
        task_id = await upstream.submit(WAN, polls=1, video_bytes=100_000)
        await relay.register(task_id, callback)
        url = (await final_webhook(hooks))["data"]["url"]
        whole = (await fetch(url)).content

        part = await fetch(url, range="bytes=1000-1999")
        assert part.status_code == 206
        assert part.content == whole[1000:2000]
        assert part.headers["content-range"] == "bytes 1000-1999/100000"

        many = ",".join(f"{n}-{n}" for n in range(0, 4000, 2))
        answer = await fetch(url, range=f"bytes={many}")
        assert answer.status_code in (200, 206, 416)


async def test_a_file_is_answered_to_head_with_its_size_and_etag(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = await upstream.submit(WAN, polls=1, video_bytes=50_000)
    await relay.register(task_id, callback)
    video = (await final_webhook(hooks))["data"]["video"]

    head = await relay.http.head(video["url"])
    assert head.status_code == 200
    assert head.headers["content-length"] == "50000"
    assert head.headers["etag"] == f'"{video["sha256"]}"'
    assert head.content == b""


def altered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


async def test_forged_and_expired_links_are_refused(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(file_ttl=1.5) as relay:
        task_id = await upstream.submit(WAN, polls=1)
        watch = await relay.register(task_id, callback)
        url = (await final_webhook(hooks))["data"]["url"]
        expires = parse_qs(urlsplit(url).query)["expires"][0]

        assert (await relay.http.get(url)).status_code == 200
        forged = [
            altered(url, signature="A" * 43),
            altered(url, expires=str(int(expires) + 3600)),
            url.replace(watch["id"], "wat_" + "0" * 28),
            url.split("?")[0],
        ]
        for link in forged:
            refused = await relay.http.get(link)
            assert refused.status_code == 403, link
            assert "not signed by this relay" in refused.json()["detail"]

        await asyncio.sleep(1.6)
        gone = await relay.http.get(url)
        assert gone.status_code == 410
        assert "expired" in gone.json()["detail"]
        assert (await relay.get(watch["id"]))["capture"]["url"] is None


async def test_the_watch_hands_out_a_freshly_signed_link_while_the_file_is_kept(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    task_id = await upstream.submit(WAN, polls=1, video_bytes=10_000)
    watch = await relay.register(task_id, callback)
    video = (await final_webhook(hooks))["data"]["video"]

    capture = (await relay.get(watch["id"]))["capture"]
    assert capture["state"] == "stored"
    assert capture["size_bytes"] == 10_000
    assert capture["expires_at"] is not None
    assert capture["error"] is None
    again = await relay.http.get(capture["url"])
    assert hashlib.sha256(again.content).hexdigest() == video["sha256"]


async def test_a_result_that_cannot_be_captured_is_reported_in_the_final_event(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(capture_max_bytes=1000) as relay:
        task_id = await upstream.submit(WAN, polls=1, video_bytes=5000)
        watch = await relay.register(task_id, callback)
        data = (await final_webhook(hooks))["data"]

        assert data["capture_error"]["code"] == "too_large"
        assert "1000" in data["capture_error"]["message"]
        assert data["url"].startswith(upstream.url)  # the upstream's own link, for what it is worth
        assert "video" not in data
        capture = (await relay.get(watch["id"]))["capture"]
        assert capture["state"] == "failed"
        assert capture["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    ("model", "simulation", "capture_timeout", "code", "said"),
    [
        # A dead link cannot come back: no retries, whatever time is left.
        (WAN, {"link_ttl": 0}, 60, "link_expired", "403"),
        # A download API that keeps failing is retried until the capture's deadline.
        (SORA, {"download_failures": 100}, 2, "download_failed", "502"),
    ],
)
async def test_a_result_that_cannot_be_had_ends_its_capture_with_the_reason(
    start_relay: RelayFactory,
    upstream: Upstream,
    receiver: Hooks,
    model: str,
    simulation: dict[str, Any],
    capture_timeout: float,
    code: str,
    said: str,
) -> None:
    hooks, callback = receiver
    async with start_relay(capture_timeout=capture_timeout) as relay:
        task_id = await upstream.submit(model, polls=1, **simulation)
        await relay.register(task_id, callback)
        data = (await final_webhook(hooks, within=10))["data"]
        assert data["capture_error"]["code"] == code
        assert said in data["capture_error"]["message"]


async def test_without_capture_a_link_passes_through_and_inline_data_never_does(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(capture=False) as relay:
        wan = await upstream.submit(WAN, polls=1)
        veo = await upstream.submit(VEO, polls=1, video_bytes=200_000)
        watches = [await relay.register(task_id, callback) for task_id in (wan, veo)]
        bodies = await hooks.final_events([watch["id"] for watch in watches])

        by_task = {body["data"]["task_id"]: body["data"] for body in bodies.values()}
        assert by_task[wan]["url"].startswith(upstream.url)
        assert "url" not in by_task[veo]
        assert all("video" not in data for data in by_task.values())
        assert all(b"base64," not in hook.body for hook in hooks.received)
        assert (await relay.get(watches[0]["id"]))["capture"] is None


async def test_the_cleanup_deletes_files_past_their_time_to_live(
    start_relay: RelayFactory,
    upstream: Upstream,
    receiver: Hooks,
    storage: dict[str, Any],
    database_url: str,
) -> None:
    hooks, callback = receiver
    async with start_relay(**storage, file_ttl=1) as relay:
        task_id = await upstream.submit(WAN, polls=1, video_bytes=20_000)
        watch = await relay.register(task_id, callback)
        url = (await final_webhook(hooks))["data"]["url"]
        await asyncio.sleep(1.1)

        db = open_database(database_url)
        files = FileStorage.from_settings(relay.settings)
        try:
            cleanup = FileCleanup(db=db, storage=files, metrics=Metrics(), stale_parts_after=60)
            await cleanup.run()
        finally:
            await db.dispose()

        capture = (await relay.get(watch["id"]))["capture"]
        assert capture["state"] == "expired"
        assert capture["sha256"] is not None  # the record stays
        assert (await relay.http.get(url)).status_code == 410
        local = files.local_path(f"videos/{watch['id']}.mp4")
        if local is not None:
            assert not local.exists()
        else:
            presigned = await files.presigned_url(
                f"videos/{watch['id']}.mp4", expires_in=timedelta(minutes=1)
            )
            assert (await fetch(presigned)).status_code == 404


@pytest.mark.parametrize("model", [WAN, VEO, SORA])
async def test_every_result_form_is_captured_with_the_embedded_simulator(
    receiver: Hooks, tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart's path: the relay polls the simulator it serves itself."""
    monkeypatch.delenv("NEBULA_BASE_URL", raising=False)
    hooks, callback = receiver
    settings = Settings(
        _env_file=None,
        simulator=True,
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        storage_dir=str(tmp_path / "files"),
        api_key=API_KEY,
        signing_secret=SIGNING_SECRET,
        poll_interval=0.1,
        tick_interval=0.05,
        allow_private_callbacks=True,
    )
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
    ):
        submitted = await http.post(
            "/simulator/v1/video/generations",
            json={"model": model, "prompt": "a cat", "simulation": {"polls": 1}},
            headers={"Authorization": "Bearer sk-simulator"},
        )
        task_id = submitted.json()["task_id"]
        await RelayClient(http, settings).register(task_id, callback)
        video = (await final_webhook(hooks))["data"]["video"]
        got = await http.get(video["url"])

    assert video["url"].startswith(f"{url}/v1/files/")
    assert hashlib.sha256(got.content).hexdigest() == video["sha256"]
    assert json.loads(hooks.received[0].body)["data"]["url"] == video["url"]
