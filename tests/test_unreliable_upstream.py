"""Whatever the upstream answers, and however often it fails, every watch ends with exactly one
webhook, and the right one."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest

from tests.conftest import RelayFactory
from tests.flaky_upstream import (
    GARBAGE,
    HANG,
    NOT_FOUND,
    OVERLOADED,
    SERVER_ERROR,
    Answer,
    FlakyUpstream,
    enveloped,
    task,
)
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
RPS = 20
URL = "https://cdn.example.com/video.mp4"
VEO_TASK_ID = base64.urlsafe_b64encode(secrets.token_bytes(302)).rstrip(b"=").decode()

#: task id → (what the upstream answers, the event type, `data.status`, `data.upstream_status`).
COURSES: dict[str, tuple[tuple[Answer, ...], str, str, str]] = {
    "documented": (
        (task("queued"), task("in_progress", progress=30), task("succeeded", url=URL)),
        "task.succeeded",
        "succeeded",
        "succeeded",
    ),
    "enveloped": (
        (enveloped("QUEUED"), enveloped("IN_PROGRESS", progress="30%"), enveloped("SUCCESS")),
        "task.succeeded",
        "succeeded",
        "SUCCESS",
    ),
    "older-shape": (
        (Answer(200, {"id": "older-shape", "status": "pending"}), task("completed")),
        "task.succeeded",
        "succeeded",
        "completed",
    ),
    "statuses-nobody-documented": (
        (task("NOT_START"), task("unknown"), task("processing"), task("Running"), task("Success")),
        "task.succeeded",
        "succeeded",
        "Success",
    ),
    "enveloped-failure": (
        (enveloped("FAILURE", failure_reason="quota exceeded"),),
        "task.failed",
        "failed",
        "FAILURE",
    ),
    "wanxiang-failure": (
        (task("failed", metadata={"output": {"message": "bad image"}}),),
        "task.failed",
        "failed",
        "failed",
    ),
    "string-error-code": (
        (task("failed", error={"code": "content_policy_violation", "message": "no"}),),
        "task.failed",
        "failed",
        "failed",
    ),
    "cancelled": ((task("cancelled"),), "task.failed", "failed", "cancelled"),
    "hidden-at-first": (
        (NOT_FOUND, NOT_FOUND, task("succeeded", url=URL)),
        "task.succeeded",
        "succeeded",
        "succeeded",
    ),
    "failing-at-first": (
        (SERVER_ERROR, OVERLOADED, GARBAGE, task("succeeded")),
        "task.succeeded",
        "succeeded",
        "succeeded",
    ),
    "hanging-at-first": ((HANG, task("failed")), "task.failed", "failed", "failed"),
    VEO_TASK_ID: ((task("succeeded"),), "task.succeeded", "succeeded", "succeeded"),
    "never-known": ((NOT_FOUND,), "watch.expired", "expired", ""),
}


@pytest.mark.parametrize("http_processes", [0, 2], ids=["in-process", "http-processes"])
async def test_every_watch_ends_with_exactly_one_correct_event_within_the_rate_budget(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks, http_processes: int
) -> None:
    hooks, callback = receiver
    flaky.failure_rate = 0.2
    for task_id, (answers, *_) in COURSES.items():
        flaky.script(task_id, *answers)
    async with start_relay(
        nebula_base_url=flaky.url,
        upstream_timeout=0.3,
        upstream_backoff_max=0.4,
        not_found_grace=2,
        circuit_cooldown=0.3,
        upstream_rps=RPS,
        http_processes=http_processes,
        capture=False,  # polling is under test; capture has tests of its own
    ) as relay:
        watches = {
            task_id: await relay.register(task_id, callback, metadata={"task": task_id})
            for task_id in COURSES
        }

        events = await hooks.final_events([w["id"] for w in watches.values()], within=30)

    for task_id, (_, kind, status, upstream_status) in COURSES.items():
        data: dict[str, Any] = events[watches[task_id]["id"]]["data"]
        assert (data["task_id"], events[watches[task_id]["id"]]["type"]) == (task_id, kind)
        assert data["status"] == status
        assert (data["upstream_status"] or "") == upstream_status
        assert data["metadata"] == {"task": task_id}
    assert events[watches["documented"]["id"]]["data"]["url"] == URL
    failures = {
        task_id: events[watches[task_id]["id"]]["data"]["error"]
        for task_id in ("enveloped-failure", "wanxiang-failure", "string-error-code")
    }
    assert failures == {
        "enveloped-failure": {"code": None, "message": "quota exceeded"},
        "wanxiang-failure": {"code": None, "message": "bad image"},
        "string-error-code": {"code": "content_policy_violation", "message": "no"},
    }
    assert events[watches["never-known"]["id"]]["data"]["error"]["code"] == "task_not_found"
    assert any(seen.task_id == VEO_TASK_ID for seen in flaky.seen), "long ids travel whole"
    assert flaky.busiest_second() <= RPS + 2  # see test_polite_polling
