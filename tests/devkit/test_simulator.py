"""The simulator behaves like the AI Nebula upstream, quirks included, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.devkit.simulator import (
    FAKE_VIDEO,
    MAX_VIDEO_BYTES,
    VIDEO_CHUNK_SIZE,
    TaskBook,
    create_simulator,
    digest_of,
    video_chunks,
    video_digest,
    video_of,
)
from tests.servers import serve

GENERATIONS = "/v1/video/generations"
TASK_NOT_EXIST = {"code": "task_not_exist", "message": "task_not_exist", "data": None}


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with serve(create_simulator()) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "Bearer sk-test-alice"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        yield http


async def submit(client: httpx.AsyncClient, model: str, **simulation: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": "a cat surfing a wave"}
    if simulation:
        body["simulation"] = simulation
    response = await client.post(GENERATIONS, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def query(client: httpx.AsyncClient, task_id: str) -> httpx.Response:
    return await client.get(f"{GENERATIONS}/{task_id}")


async def query_ok(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await query(client, task_id)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# --- submit shapes ---------------------------------------------------------------------------


async def test_sora_submit_answers_with_an_openai_like_video_object(
    client: httpx.AsyncClient,
) -> None:
    answer = await submit(client, "sora-2")

    assert re.fullmatch(r"video_[0-9a-f]{32}", answer["task_id"])
    assert answer["status"] == "submitted"
    assert answer["format"] == "mp4"
    metadata = answer["metadata"]
    assert metadata["id"] == answer["task_id"]
    assert metadata["model"] == "sora-2"
    assert metadata["status"] == "queued"
    assert metadata["progress"] == 0
    assert metadata["expires_at"] - metadata["created_at"] == 24 * 3600


async def test_veo_submit_answers_only_a_long_url_safe_base64_task_id(
    client: httpx.AsyncClient,
) -> None:
    answer = await submit(client, "veo-3.1-fast-generate-preview")

    assert list(answer) == ["task_id"]
    task_id = answer["task_id"]
    assert len(task_id) >= 300
    assert re.fullmatch(r"[A-Za-z0-9_-]+", task_id)  # URL-safe alphabet, no "=" padding


@pytest.mark.parametrize("model", ["wan2.5-t2v-preview", "doubao-seedance-1-0-pro"])
async def test_wan_and_other_models_submit_with_a_uuid_and_pending_output(
    client: httpx.AsyncClient, model: str
) -> None:
    answer = await submit(client, model)

    assert str(uuid.UUID(answer["task_id"])) == answer["task_id"]
    assert answer["status"] == "submitted"
    assert answer["metadata"]["output"]["task_status"] == "PENDING"


# --- the course of a task ----------------------------------------------------------------------


async def test_polls_course_advances_one_step_per_query(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "wan2.5-t2v-preview", polls=4))["task_id"]

    answers = [await query_ok(client, task_id) for _ in range(5)]

    assert [a["status"] for a in answers] == [
        "queued",
        "in_progress",
        "in_progress",
        "succeeded",
        "succeeded",
    ]
    assert all(a["task_id"] == task_id and a["format"] == "mp4" for a in answers)
    assert [a["progress"] for a in answers] == ["0%", "33%", "66%", "100%", "100%"]


async def test_polls_of_one_is_terminal_on_the_first_query(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", polls=1))["task_id"]

    answer = await query_ok(client, task_id)

    assert answer["status"] == "succeeded"
    assert answer["progress"] == 100
    assert "url" not in answer  # Sora results come from the download API


async def test_polls_wins_over_duration(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", polls=2, duration=0))["task_id"]

    assert (await query_ok(client, task_id))["status"] == "queued"
    assert (await query_ok(client, task_id))["status"] == "succeeded"


async def test_time_course_reaches_terminal_after_duration(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", duration=0.5))["task_id"]

    early = await query_ok(client, task_id)
    await asyncio.sleep(0.6)
    late = await query_ok(client, task_id)

    assert early["status"] in {"queued", "in_progress"}
    assert 0 <= early["progress"] < 100
    assert late["status"] == "succeeded"


async def test_time_course_is_queued_then_in_progress(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "wan2.5-t2v-preview", duration=4))["task_id"]

    first = await query_ok(client, task_id)  # within the queued first tenth of the course
    await asyncio.sleep(0.5)
    later = await query_ok(client, task_id)

    assert first["status"] == "queued"
    assert first["progress"] == "0%"
    assert later["status"] == "in_progress"
    assert 10 <= int(later["progress"].removesuffix("%")) < 100


async def test_failure_carries_the_requested_reason(client: httpx.AsyncClient) -> None:
    task_id = (
        await submit(client, "wan2.5-t2v-preview", polls=1, outcome="failed", failure_reason="nope")
    )["task_id"]

    answer = await query_ok(client, task_id)

    assert answer["status"] == "failed"
    assert answer["error"] == {"code": 400, "message": "nope"}
    assert "url" not in answer


async def test_failure_reason_defaults_to_the_documented_example(
    client: httpx.AsyncClient,
) -> None:
    task_id = (await submit(client, "veo-3.0-fast-generate-001", duration=0, outcome="failed"))[
        "task_id"
    ]

    answer = await query_ok(client, task_id)

    assert answer["error"]["message"] == "Prompt contains inappropriate content"


# --- results -----------------------------------------------------------------------------------


async def test_veo_result_is_a_data_uri_of_the_video(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "veo-3.0-fast-generate-001", polls=1))["task_id"]

    url = (await query_ok(client, task_id))["url"]

    prefix = "data:video/mp4;base64,"
    assert url.startswith(prefix)
    video = base64.b64decode(url.removeprefix(prefix))
    assert video == FAKE_VIDEO
    assert video[4:8] == b"ftyp"


async def test_wan_result_url_is_fetchable_from_the_simulator(
    client: httpx.AsyncClient, base_url: str
) -> None:
    task_id = (await submit(client, "wan2.5-t2v-preview", polls=1))["task_id"]

    url = (await query_ok(client, task_id))["url"]
    async with httpx.AsyncClient() as anonymous:  # result links are pre-signed, no bearer key
        video = await anonymous.get(url)

    assert url == f"{base_url}/simulator-files/{task_id}.mp4"
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.content == FAKE_VIDEO


async def test_wan_result_url_keeps_the_mount_prefix() -> None:
    host = FastAPI()
    host.mount("/upstream", create_simulator())
    async with (
        serve(host) as base_url,
        httpx.AsyncClient(
            base_url=f"{base_url}/upstream", headers={"Authorization": "Bearer sk-x"}
        ) as client,
    ):
        task_id = (await submit(client, "wan2.5-t2v-preview", polls=1))["task_id"]
        url = (await query_ok(client, task_id))["url"]
        video = await client.get(url)

    assert url == f"{base_url}/upstream/simulator-files/{task_id}.mp4"
    assert video.content == FAKE_VIDEO


async def test_unknown_video_file_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/simulator-files/{uuid.uuid4()}.mp4")

    assert response.status_code == 404


async def test_sora_download_before_and_after_completion(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", polls=2))["task_id"]
    download = f"{GENERATIONS}/download"

    too_early = await client.get(download, params={"id": task_id})
    await query_ok(client, task_id)
    still_early = await client.get(download, params={"id": task_id})  # downloads don't advance
    assert (await query_ok(client, task_id))["status"] == "succeeded"
    done = await client.get(download, params={"id": task_id})

    for response in (too_early, still_early):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert done.status_code == 200
    answer = done.json()
    assert answer["success"] is True
    assert answer["task_id"] == task_id
    assert answer["generation_id"]
    assert answer["format"] == "mp4"
    assert base64.b64decode(answer["base64"]) == FAKE_VIDEO
    assert answer["size"] == len(FAKE_VIDEO)
    assert answer["data_url"] == "data:video/mp4;base64," + answer["base64"]


async def test_sora_download_of_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{GENERATIONS}/download", params={"id": "video_unknown"})

    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "Task not found", "type": "invalid_request_error"}
    }


# --- sized results ------------------------------------------------------------------------------

SIZE = 3 * VIDEO_CHUNK_SIZE + 1234
"""Several pieces and a short last one, so piecing the video together is really exercised."""


async def test_sized_video_is_an_mp4_looking_file_of_that_size_determined_by_the_task_id() -> None:
    video = b"".join(video_chunks("task-a", SIZE))
    pieces = [len(chunk) for chunk in video_chunks("task-a", SIZE)]

    assert len(video) == SIZE
    assert pieces == [VIDEO_CHUNK_SIZE] * 3 + [1234]
    assert video[:24] == FAKE_VIDEO[:24]  # the same ftyp box as the default video
    assert video[24:32] == (SIZE - 24).to_bytes(4, "big") + b"free"  # one box holds the rest
    assert b"".join(video_chunks("task-a", SIZE)) == video
    assert b"".join(video_chunks("task-b", SIZE)) != video
    assert video_digest("task-a", SIZE) == (hashlib.sha256(video).hexdigest(), SIZE)
    assert b"".join(video_chunks("task-a")) == FAKE_VIDEO
    assert video_digest("task-a") == (hashlib.sha256(FAKE_VIDEO).hexdigest(), len(FAKE_VIDEO))


async def test_even_the_largest_video_is_produced_lazily_piece_by_piece() -> None:
    pieces = video_chunks("big", MAX_VIDEO_BYTES)

    first = next(pieces)  # a GiB built up front would take seconds and a GiB of memory

    assert len(first) == VIDEO_CHUNK_SIZE
    assert first[24:32] == (MAX_VIDEO_BYTES - 24).to_bytes(4, "big") + b"free"
    with pytest.raises(ValueError, match="video_bytes"):
        next(video_chunks("big", MAX_VIDEO_BYTES + 1))


async def test_wan_link_streams_the_sized_video_with_its_length_and_answers_head(
    client: httpx.AsyncClient,
) -> None:
    task_id = (await submit(client, "wan2.5-t2v-preview", polls=1, video_bytes=SIZE))["task_id"]
    url = (await query_ok(client, task_id))["url"]

    async with httpx.AsyncClient() as anonymous:
        head = await anonymous.head(url)
        async with anonymous.stream("GET", url) as response:
            received = [chunk async for chunk in response.aiter_raw()]

    assert head.status_code == 200
    assert head.headers["content-length"] == str(SIZE)
    assert head.headers["content-type"] == "video/mp4"
    assert head.content == b""
    assert response.status_code == 200
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["content-type"] == "video/mp4"
    assert len(received) > 1  # streamed, not sent in one piece
    assert b"".join(received) == b"".join(video_chunks(task_id, SIZE))
    assert hashlib.sha256(b"".join(received)).hexdigest() == video_digest(task_id, SIZE).sha256


async def test_default_wan_link_answers_head_with_the_fake_video_length(
    client: httpx.AsyncClient,
) -> None:
    task_id = (await submit(client, "wan2.5-t2v-preview", polls=1))["task_id"]
    url = (await query_ok(client, task_id))["url"]

    async with httpx.AsyncClient() as anonymous:
        head = await anonymous.head(url)

    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(FAKE_VIDEO))


async def test_veo_data_uri_and_sora_download_carry_the_sized_video(
    client: httpx.AsyncClient,
) -> None:
    veo_id = (await submit(client, "veo-3.0-fast-generate-001", polls=1, video_bytes=SIZE))[
        "task_id"
    ]
    sora_id = (await submit(client, "sora-2", polls=1, video_bytes=SIZE))["task_id"]

    veo_url = (await query_ok(client, veo_id))["url"]
    await query_ok(client, sora_id)
    download = await client.get(f"{GENERATIONS}/download", params={"id": sora_id})

    assert base64.b64decode(veo_url.removeprefix("data:video/mp4;base64,")) == b"".join(
        video_chunks(veo_id, SIZE)
    )
    assert download.status_code == 200
    answer = download.json()
    assert set(answer) == {
        "success", "generation_id", "task_id", "format", "size", "base64", "data_url",
    }  # fmt: skip
    assert answer["size"] == SIZE
    assert base64.b64decode(answer["base64"]) == b"".join(video_chunks(sora_id, SIZE))
    assert answer["data_url"] == "data:video/mp4;base64," + answer["base64"]


async def test_task_objects_give_their_own_video_and_digest() -> None:
    simulator = create_simulator()
    async with (
        serve(simulator) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer sk-x"}) as client,
    ):
        task_id = (await submit(client, "veo-3.0-fast-generate-001", polls=1, video_bytes=SIZE))[
            "task_id"
        ]
        data_url = (await query_ok(client, task_id))["url"]
        again = (await query_ok(client, task_id))["url"]

    book: TaskBook = simulator.state.book
    task = book.get(task_id)
    assert task is not None
    assert b"".join(video_of(task)) == b"".join(video_chunks(task_id, SIZE))
    assert digest_of(task) == video_digest(task_id, SIZE)
    assert data_url == again == task.data_url()
    assert task.data_url() is task.data_url()  # built once, then kept on the task


# --- expiry of results ---------------------------------------------------------------------------


async def test_wan_link_expires_link_ttl_after_the_query_that_saw_success(
    client: httpx.AsyncClient,
) -> None:
    task_id = (await submit(client, "wan2.5-t2v-preview", polls=2, link_ttl=0.5))["task_id"]
    assert (await query_ok(client, task_id))["status"] == "queued"
    await asyncio.sleep(0.6)  # longer than the ttl, but the task has not succeeded yet

    url = (await query_ok(client, task_id))["url"]
    async with httpx.AsyncClient() as anonymous:
        fresh = await anonymous.get(url)
        await asyncio.sleep(0.6)
        stale = await anonymous.get(url)
        stale_head = await anonymous.head(url)
    answer = await query_ok(client, task_id)

    assert fresh.status_code == 200
    assert fresh.content == FAKE_VIDEO
    assert stale.status_code == stale_head.status_code == 403
    assert b"<Code>AccessDenied</Code>" in stale.content
    assert stale.headers["content-type"].startswith("application/xml")
    assert (answer["status"], answer["url"]) == ("succeeded", url)  # the link is still handed out


async def test_veo_url_reads_expired_link_ttl_after_the_end_of_its_duration(
    client: httpx.AsyncClient,
) -> None:
    task_id = (await submit(client, "veo-3.0-fast-generate-001", duration=0.5, link_ttl=0.6))[
        "task_id"
    ]

    await asyncio.sleep(0.7)  # succeeded 0.2 s ago, unasked: the ttl runs from 0.5 s on
    fresh = await query_ok(client, task_id)
    await asyncio.sleep(0.6)
    stale = await query_ok(client, task_id)

    assert fresh["status"] == "succeeded"
    assert fresh["url"].startswith("data:video/mp4;base64,")
    assert stale["status"] == "succeeded"
    assert stale["url"] == "expired"


async def test_sora_download_is_404_once_the_result_expired(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", polls=1, link_ttl=0.4))["task_id"]
    await query_ok(client, task_id)
    download = f"{GENERATIONS}/download"

    fresh = await client.get(download, params={"id": task_id})
    await asyncio.sleep(0.5)
    stale = await client.get(download, params={"id": task_id})

    assert fresh.status_code == 200
    assert stale.status_code == 404
    assert stale.json() == {"error": {"message": "Task not found", "type": "invalid_request_error"}}


async def test_a_result_without_link_ttl_never_expires(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", duration=0))["task_id"]
    await asyncio.sleep(0.3)

    response = await client.get(f"{GENERATIONS}/download", params={"id": task_id})

    assert response.status_code == 200


async def test_a_failed_task_has_nothing_to_expire(client: httpx.AsyncClient) -> None:
    task_id = (
        await submit(client, "veo-3.0-fast-generate-001", polls=1, outcome="failed", link_ttl=0)
    )["task_id"]

    answer = await query_ok(client, task_id)

    assert answer["status"] == "failed"
    assert "url" not in answer


# --- failing downloads ---------------------------------------------------------------------------


async def test_sora_download_fails_with_502_the_scripted_number_of_times(
    client: httpx.AsyncClient,
) -> None:
    task_id = (await submit(client, "sora-2", polls=2, download_failures=2))["task_id"]
    download = f"{GENERATIONS}/download"

    too_early = await client.get(download, params={"id": task_id})  # not counted as a failure
    await query_ok(client, task_id)
    await query_ok(client, task_id)
    answers = [await client.get(download, params={"id": task_id}) for _ in range(4)]

    assert too_early.status_code == 400
    assert [a.status_code for a in answers] == [502, 502, 200, 200]
    assert answers[0].json()["error"]["message"]
    assert answers[0].json()["error"]["type"]
    assert base64.b64decode(answers[2].json()["base64"]) == FAKE_VIDEO


# --- visibility and authentication -------------------------------------------------------------


async def test_unknown_task_id_answers_task_not_exist_with_400(client: httpx.AsyncClient) -> None:
    response = await query(client, "video_0123456789abcdef0123456789abcdef")

    assert response.status_code == 400
    assert response.json() == TASK_NOT_EXIST


async def test_task_is_invisible_to_another_key(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "sora-2", polls=2))["task_id"]

    other = await client.get(
        f"{GENERATIONS}/{task_id}", headers={"Authorization": "Bearer sk-test-mallory"}
    )
    other_download = await client.get(
        f"{GENERATIONS}/download",
        params={"id": task_id},
        headers={"Authorization": "Bearer sk-test-mallory"},
    )

    assert other.status_code == 400
    assert other.json() == TASK_NOT_EXIST
    assert other_download.status_code == 404
    # The other key's query did not advance the owner's course.
    assert (await query_ok(client, task_id))["status"] == "queued"


async def test_task_answers_task_not_exist_until_visible(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "veo-3.0-fast-generate-001", polls=1, visible_after=0.5))[
        "task_id"
    ]

    hidden = await query(client, task_id)
    await asyncio.sleep(0.6)
    answer = await query_ok(client, task_id)

    assert hidden.status_code == 400
    assert hidden.json() == TASK_NOT_EXIST
    assert answer["status"] == "succeeded"  # hidden queries did not count as polls


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", GENERATIONS),
        ("GET", f"{GENERATIONS}/video_0123"),
        ("GET", f"{GENERATIONS}/download?id=video_0123"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic c2stdGVzdA==", "sk-test"])
async def test_requests_without_a_bearer_key_are_401(
    base_url: str, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=base_url) as anonymous:
        response = await anonymous.request(
            method, path, headers=headers, json={"model": "sora-2", "prompt": "x"}
        )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "new_api_error"
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "a cat"},
        {"model": "", "prompt": "a cat"},
        {"model": "sora-2"},
        {"model": "sora-2", "prompt": ""},
        {"model": 2, "prompt": "a cat"},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"outcome": "exploded"}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"duration": -1}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"duration": "10"}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"polls": 0}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"polls": 2.5}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"polls": True}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"visible_after": -0.1}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"failure_reason": None}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"pols": 3}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"video_bytes": 63}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"video_bytes": MAX_VIDEO_BYTES + 1}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"video_bytes": "1000"}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"video_bytes": 1000.0}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"video_bytes": True}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"link_ttl": -1}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"link_ttl": "60"}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"download_failures": -1}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"download_failures": 1.5}},
        {"model": "sora-2", "prompt": "a cat", "simulation": {"download_failures": None}},
        {"model": "sora-2", "prompt": "a cat", "simulation": "fast"},
        ["sora-2", "a cat"],
    ],
)
async def test_bad_submit_bodies_are_400(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.post(GENERATIONS, json=body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["message"]


async def test_submit_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        GENERATIONS, content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_download_without_an_id_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{GENERATIONS}/download")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_model_specific_fields_and_integer_durations_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        GENERATIONS,
        json={
            "model": "sora-2",
            "prompt": "a cat",
            "seconds": "4",
            "size": "720x1280",
            "simulation": {"duration": 0, "visible_after": 0},
        },
    )

    assert response.status_code == 200
    assert (await query_ok(client, response.json()["task_id"]))["status"] == "succeeded"


async def test_percent_encoded_veo_task_id_resolves(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "veo-3.0-fast-generate-001", polls=1))["task_id"]
    encoded = "".join(f"%{byte:02X}" for byte in task_id.encode())

    response = await query(client, encoded)

    assert "%" in response.request.url.raw_path.decode()  # really sent percent-encoded
    assert response.status_code == 200
    assert response.json()["task_id"] == task_id
