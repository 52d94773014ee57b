"""Whatever the upstream answers becomes one normalized snapshot (see the upstream NOTES.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.upstream.snapshot import (
    SnapshotError,
    TaskError,
    TaskStatus,
    normalize_status,
    parse_snapshot,
)

TASK_ID = "video_69095b4ce0048190893a01510c0c98b0"
NO_REASON = "the upstream reported the task as failed without a reason"


def task(status: str, **fields: Any) -> dict[str, Any]:
    """A body in the documented flat shape."""
    return {"task_id": TASK_ID, "status": status, "format": "mp4", **fields}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The documented four.
        ("queued", TaskStatus.QUEUED),
        ("in_progress", TaskStatus.IN_PROGRESS),
        ("succeeded", TaskStatus.SUCCEEDED),
        ("failed", TaskStatus.FAILED),
        # Seen besides them.
        ("completed", TaskStatus.SUCCEEDED),
        ("success", TaskStatus.SUCCEEDED),
        ("failure", TaskStatus.FAILED),
        ("error", TaskStatus.FAILED),
        ("cancelled", TaskStatus.FAILED),
        ("canceled", TaskStatus.FAILED),
        ("submitted", TaskStatus.QUEUED),
        ("pending", TaskStatus.QUEUED),
        ("not_start", TaskStatus.QUEUED),
        ("unknown", TaskStatus.QUEUED),
        ("processing", TaskStatus.IN_PROGRESS),
        ("running", TaskStatus.IN_PROGRESS),
        # The enveloped spellings, and case and padding in general.
        ("SUCCESS", TaskStatus.SUCCEEDED),
        ("FAILURE", TaskStatus.FAILED),
        ("IN_PROGRESS", TaskStatus.IN_PROGRESS),
        ("QUEUED", TaskStatus.QUEUED),
        ("SUBMITTED", TaskStatus.QUEUED),
        ("NOT_START", TaskStatus.QUEUED),
        ("UNKNOWN", TaskStatus.QUEUED),
        ("Succeeded", TaskStatus.SUCCEEDED),
        ("Cancelled", TaskStatus.FAILED),
        ("  completed\n", TaskStatus.SUCCEEDED),
    ],
)
def test_every_known_status_spelling_has_one_meaning(raw: str, expected: TaskStatus) -> None:
    assert normalize_status(raw) is expected


@pytest.mark.parametrize("raw", ["rendering", "waiting_for_gpu", "done?", "succeeded_partially"])
def test_a_status_nobody_documented_means_still_running(raw: str) -> None:
    assert normalize_status(raw) is TaskStatus.IN_PROGRESS


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (TaskStatus.QUEUED, False),
        (TaskStatus.IN_PROGRESS, False),
        (TaskStatus.SUCCEEDED, True),
        (TaskStatus.FAILED, True),
    ],
)
def test_only_success_and_failure_end_a_task(status: TaskStatus, terminal: bool) -> None:
    assert status.terminal is terminal


def test_the_documented_success_carries_its_link() -> None:
    url = "https://nebula-ads.oss-cn-guangzhou.aliyuncs.com/2025/11/18/abc123/video.mp4"
    body = task("succeeded", url=url)

    snapshot = parse_snapshot(body)

    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.upstream_status == "succeeded"
    assert snapshot.url == url
    assert snapshot.error is None
    assert snapshot.progress is None
    assert snapshot.body == body


def test_the_enveloped_answer_is_read_from_its_data() -> None:
    body = {
        "code": "success",
        "message": "",
        "data": {"task_id": TASK_ID, "status": "IN_PROGRESS", "progress": "30%"},
    }

    snapshot = parse_snapshot(body)

    assert snapshot.status is TaskStatus.IN_PROGRESS
    assert snapshot.upstream_status == "IN_PROGRESS"
    assert snapshot.progress == 30.0
    assert snapshot.body == body, "the whole answer is kept, envelope included"


def test_an_enveloped_failure_finds_its_reason_inside_the_envelope() -> None:
    body = {
        "code": "success",
        "data": {"task_id": TASK_ID, "status": "FAILURE", "failure_reason": "quota exceeded"},
    }

    snapshot = parse_snapshot(body)

    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.upstream_status == "FAILURE"
    assert snapshot.error == TaskError(code=None, message="quota exceeded")


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (42, 42.0),
        (0, 0.0),
        (100, 100.0),
        (37.5, 37.5),
        ("30%", 30.0),
        (" 30 % ", 30.0),
        ("55", 55.0),
        ("12.5%", 12.5),
        ("almost done", None),
        ("", None),
        ("nan%", None),  # float() reads it, but it is no progress, nor JSON in a webhook
        ("inf", None),
        (float("nan"), None),
        (True, None),
        (False, None),
        (None, None),
        ([30], None),
        ({"percent": 30}, None),
    ],
)
def test_progress_is_a_number_when_the_upstream_gives_one(
    progress: object, expected: float | None
) -> None:
    assert parse_snapshot(task("in_progress", progress=progress)).progress == expected


def test_missing_progress_is_unknown_not_zero() -> None:
    assert parse_snapshot(task("in_progress")).progress is None


@pytest.mark.parametrize("fields", [{}, {"url": ""}, {"url": None}, {"url": 42}])
def test_a_success_without_a_link_has_no_url(fields: dict[str, Any]) -> None:
    """Sora answers without a url: the video comes from the download API instead."""
    snapshot = parse_snapshot(task("succeeded", **fields))

    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.url is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"error": {"code": 400, "message": "Prompt contains inappropriate content"}},
            TaskError(code=400, message="Prompt contains inappropriate content"),
        ),
        (
            {"error": {"code": "content_policy_violation", "message": "Blocked by policy"}},
            TaskError(code="content_policy_violation", message="Blocked by policy"),
        ),
        (
            {"error": {"message": "no code given"}},
            TaskError(code=None, message="no code given"),
        ),
        (
            {"error": {"code": [400], "message": "odd code"}},
            TaskError(code=None, message="odd code"),
        ),
        ({"error": "plain text reason"}, TaskError(code=None, message="plain text reason")),
        ({"failure_reason": "nsfw prompt"}, TaskError(code=None, message="nsfw prompt")),
        (
            {"error": {"code": 400, "message": ""}, "failure_reason": "the real reason"},
            TaskError(code=None, message="the real reason"),
        ),
        (
            {
                "metadata": {
                    "output": {
                        "task_status": "FAILED",
                        "code": "DataInspectionFailed",
                        "message": "Input data may contain inappropriate content.",
                    }
                }
            },
            TaskError(
                code="DataInspectionFailed",
                message="Input data may contain inappropriate content.",
            ),
        ),
        ({}, TaskError(code=None, message=NO_REASON)),
        ({"error": None, "failure_reason": ""}, TaskError(code=None, message=NO_REASON)),
        ({"metadata": {"output": {"task_status": "FAILED"}}}, TaskError(None, NO_REASON)),
        ({"metadata": "not an object"}, TaskError(code=None, message=NO_REASON)),
    ],
)
def test_a_failure_says_why_wherever_the_upstream_put_the_reason(
    fields: dict[str, Any], expected: TaskError
) -> None:
    snapshot = parse_snapshot(task("failed", **fields))

    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.error == expected


@pytest.mark.parametrize("code", [True, 1.5, ["x"], {"a": 1}])
def test_a_failure_code_is_a_string_or_an_integer_or_nothing(code: object) -> None:
    """As the webhook's schema documents it: a JSON `true` is an int to Python."""
    for fields in (
        {"error": {"code": code, "message": "m"}},
        {"metadata": {"output": {"code": code, "message": "m"}}},
    ):
        assert parse_snapshot(task("failed", **fields)).error == TaskError(code=None, message="m")


def test_the_error_field_wins_over_the_other_reasons() -> None:
    body = task(
        "failed",
        error={"code": 400, "message": "from error"},
        failure_reason="from failure_reason",
        metadata={"output": {"message": "from metadata"}},
    )

    assert parse_snapshot(body).error == TaskError(code=400, message="from error")


@pytest.mark.parametrize("status", ["queued", "in_progress", "succeeded"])
def test_only_a_failure_carries_an_error(status: str) -> None:
    body = task(status, error={"code": 400, "message": "stale"}, failure_reason="stale")

    assert parse_snapshot(body).error is None


@pytest.mark.parametrize(
    "body",
    [None, "succeeded", 200, 1.5, True, ["succeeded"], [{"status": "succeeded"}]],
)
def test_an_answer_that_is_not_an_object_is_not_a_task(body: object) -> None:
    with pytest.raises(SnapshotError, match="JSON object"):
        parse_snapshot(body)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"task_id": TASK_ID},
        {"task_id": TASK_ID, "status": ""},
        {"task_id": TASK_ID, "status": "   "},
        {"task_id": TASK_ID, "status": None},
        {"task_id": TASK_ID, "status": 2},
        {"task_id": TASK_ID, "status": {"value": "succeeded"}},
        {"code": "success", "data": {"task_id": TASK_ID}},
    ],
)
def test_an_answer_without_a_status_is_not_a_task(body: dict[str, Any]) -> None:
    with pytest.raises(SnapshotError, match="no status"):
        parse_snapshot(body)


def test_an_empty_wanxiang_reason_falls_back_to_the_generic_message() -> None:
    body = task("failed", metadata={"output": {"task_status": "FAILED", "message": ""}})

    assert parse_snapshot(body).error == TaskError(code=None, message=NO_REASON)


def test_an_older_answer_naming_its_task_id_is_read_alike() -> None:
    snapshot = parse_snapshot({"id": TASK_ID, "status": "pending", "progress": 0})

    assert snapshot.status is TaskStatus.QUEUED
    assert snapshot.upstream_status == "pending"
    assert snapshot.progress == 0.0


@pytest.mark.parametrize(
    "body",
    [
        # The envelope of the code the upstream is built on: epoch seconds.
        {"code": "success", "data": {"status": "SUCCESS", "finish_time": 1795889720}},
        # OpenAI's video object, as Sora's metadata carries it.
        task("succeeded", metadata={"status": "completed", "completed_at": 1795889720}),
        # Milliseconds, and ISO 8601, are read alike.
        task("failed", finished_at=1795889720000),
        task("succeeded", completed_at="2026-11-28T18:15:20Z"),
        task("succeeded", completed_at="2026-11-28T18:15:20"),
    ],
)
def test_an_ended_tasks_own_completion_time_is_read_wherever_the_answer_puts_it(
    body: dict[str, Any],
) -> None:
    assert parse_snapshot(body).finished_at == datetime(2026, 11, 28, 18, 15, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        task("succeeded"),
        {"code": "success", "data": {"status": "SUCCESS", "finish_time": 0}},
        task("succeeded", completed_at=None),
        task("succeeded", completed_at=True),
        task("succeeded", completed_at="yesterday"),
        task("succeeded", completed_at=float("nan")),
        task("succeeded", completed_at=10**30),
        task("in_progress", completed_at=1795889720),
    ],
)
def test_a_completion_time_that_is_missing_unreadable_or_not_yet_due_is_not_known(
    body: dict[str, Any],
) -> None:
    assert parse_snapshot(body).finished_at is None
