"""The webhook body: what a receiver gets, frozen when the terminal status is first seen."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from app.delivery.bodies import ExpiryReason
from app.delivery.webhooks import (
    EXPIRED,
    FAILED,
    SUCCEEDED,
    Expiry,
    build_expiry_payload,
    build_payload,
    event_type,
)
from app.ids import event_id
from app.upstream.snapshot import TaskStatus, parse_snapshot

WATCH_ID = "wat_0193a5b2c3d4e5f6a7b8c9d0e1f2"
TASK_ID = "video_69095b4ce0048190893a01510c0c98b0"
CREATED_AT = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)
LINK = "https://nebula-ads.oss-cn-guangzhou.aliyuncs.com/2025/11/18/abc123/video.mp4"
#: What Veo puts in `url`: the whole video, inline, megabytes of it.
INLINE_VIDEO = "data:video/mp4;base64," + "AAAAIGZ0eXBpc29t" * 4096


def payload(upstream: dict[str, Any], metadata: Any = None) -> dict[str, Any]:
    """The parsed webhook body for an upstream answer."""
    snapshot = parse_snapshot(upstream)
    text = build_payload(
        event_id=event_id(WATCH_ID, event_type(snapshot.status)),
        created_at=CREATED_AT,
        watch_id=WATCH_ID,
        task_id=TASK_ID,
        metadata=metadata,
        snapshot=snapshot,
    )
    body: dict[str, Any] = json.loads(text)
    return body


def task(status: str, **fields: Any) -> dict[str, Any]:
    return {"task_id": TASK_ID, "status": status, "format": "mp4", **fields}


def test_a_success_is_a_task_succeeded_event() -> None:
    upstream = task("succeeded", url=LINK)

    body = payload(upstream, metadata={"order": 42})

    assert body == {
        "id": event_id(WATCH_ID, SUCCEEDED),
        "type": "task.succeeded",
        "timestamp": "2026-11-28T09:30:15Z",
        "data": {
            "watch_id": WATCH_ID,
            "task_id": TASK_ID,
            "status": "succeeded",
            "upstream_status": "succeeded",
            "url": LINK,
            "metadata": {"order": 42},
            "upstream": upstream,
        },
    }


def test_a_failure_is_a_task_failed_event_with_its_reason() -> None:
    body = payload(task("failed", error={"code": 400, "message": "nsfw prompt"}))

    assert body["id"] == event_id(WATCH_ID, FAILED)
    assert body["type"] == "task.failed"
    assert body["data"]["status"] == "failed"
    assert body["data"]["error"] == {"code": 400, "message": "nsfw prompt"}
    assert "url" not in body["data"]


def test_a_failure_without_a_code_still_has_an_error_block() -> None:
    body = payload(task("FAILURE", failure_reason="quota"))

    assert body["data"]["upstream_status"] == "FAILURE"
    assert body["data"]["error"] == {"code": None, "message": "quota"}


def test_a_success_has_no_error_block() -> None:
    body = payload(task("succeeded", url=LINK, error={"code": 400, "message": "stale"}))

    assert "error" not in body["data"]
    assert body["data"]["upstream"]["error"] == {"code": 400, "message": "stale"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (TaskStatus.SUCCEEDED, "task.succeeded"),
        (TaskStatus.FAILED, "task.failed"),
    ],
)
def test_the_event_type_follows_the_final_status(status: TaskStatus, expected: str) -> None:
    assert event_type(status) == expected


def test_the_body_is_compact_json_that_keeps_non_ascii_text() -> None:
    snapshot = parse_snapshot(task("failed", error={"message": "提示词违规"}))

    text = build_payload(
        event_id="msg_1",
        created_at=CREATED_AT,
        watch_id=WATCH_ID,
        task_id=TASK_ID,
        metadata={"note": "café"},
        snapshot=snapshot,
    )

    assert text.startswith('{"id":"msg_1","type":"task.failed","timestamp":')
    assert ", " not in text
    assert '": ' not in text
    assert "提示词违规" in text
    assert "café" in text


def test_the_timestamp_keeps_sub_second_precision_and_ends_in_z() -> None:
    snapshot = parse_snapshot(task("succeeded"))
    created_at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    text = build_payload(
        event_id="msg_1",
        created_at=created_at,
        watch_id=WATCH_ID,
        task_id=TASK_ID,
        metadata=None,
        snapshot=snapshot,
    )

    timestamp = json.loads(text)["timestamp"]
    assert timestamp == "2026-01-02T03:04:05.678901Z"
    assert datetime.fromisoformat(timestamp) == created_at


@pytest.mark.parametrize("link", [LINK, "http://cdn.example/v.mp4?sig=abc&exp=1"])
def test_a_real_link_is_given_as_the_url(link: str) -> None:
    assert payload(task("succeeded", url=link))["data"]["url"] == link


@pytest.mark.parametrize(
    "url",
    [
        INLINE_VIDEO,
        "data:video/mp4;base64,AAAA",
        "expired",  # what Veo's inline video becomes after 12 hours
        "ftp://files.example/v.mp4",
        "/relative/video.mp4",
        "",
    ],
)
def test_anything_but_an_http_link_is_no_url(url: str) -> None:
    body = payload(task("succeeded", url=url))

    assert "url" not in body["data"]


def test_an_inline_video_is_replaced_by_a_marker_of_its_size() -> None:
    body = payload(task("succeeded", url=INLINE_VIDEO))

    assert body["data"]["upstream"]["url"] == (
        f"[inline video/mp4 omitted: {len(INLINE_VIDEO)} characters]"
    )


def test_inline_files_are_omitted_however_deep_they_sit() -> None:
    inline_image = "data:image/png;base64," + "iVBORw0KGgo" * 200
    inline_bare = "data:," + "x" * 2000
    upstream = {
        "code": "success",
        "data": {
            "status": "SUCCESS",
            "url": INLINE_VIDEO,
            "metadata": {
                "frames": [{"thumbnail": inline_image}, "data:text/plain,short"],
                "output": {"raw": inline_bare},
            },
        },
    }

    data = payload(upstream)["data"]["upstream"]["data"]

    assert data["url"].startswith("[inline video/mp4 omitted: ")
    assert data["metadata"]["frames"] == [
        {"thumbnail": f"[inline image/png omitted: {len(inline_image)} characters]"},
        "data:text/plain,short",
    ]
    assert data["metadata"]["output"]["raw"] == (
        f"[inline application/octet-stream omitted: {len(inline_bare)} characters]"
    )


def test_a_webhook_for_an_inline_video_stays_small() -> None:
    text = build_payload(
        event_id="msg_1",
        created_at=CREATED_AT,
        watch_id=WATCH_ID,
        task_id=TASK_ID,
        metadata=None,
        snapshot=parse_snapshot(task("succeeded", url=INLINE_VIDEO)),
    )

    assert len(INLINE_VIDEO) > 50_000
    assert len(text) < 1024


@pytest.mark.parametrize(
    "value",
    [
        "data:video/mp4;base64," + "A" * 1000,  # short enough to be a value, not a file
        "x" * 5000,  # long, but not inline data
        "prefix data:video/mp4;base64," + "A" * 5000,
        "expired",
    ],
)
def test_other_strings_travel_unchanged(value: str) -> None:
    body = payload(task("succeeded", note=value, nested={"list": [value]}))

    assert body["data"]["upstream"]["note"] == value
    assert body["data"]["upstream"]["nested"] == {"list": [value]}


def test_metadata_is_echoed_as_given() -> None:
    metadata = {"order": 42, "tags": ["a", "b"], "nested": {"ok": True, "none": None}}

    assert payload(task("succeeded"), metadata=metadata)["data"]["metadata"] == metadata
    assert payload(task("succeeded"))["data"]["metadata"] is None


def test_an_event_id_is_the_same_for_the_same_watch_and_type() -> None:
    assert event_id(WATCH_ID, SUCCEEDED) == event_id(WATCH_ID, SUCCEEDED)
    assert event_id(WATCH_ID, SUCCEEDED).startswith("msg_")


def test_event_ids_differ_across_watches_and_types() -> None:
    ids = {
        event_id(watch, kind)
        for watch in (WATCH_ID, "wat_other", "wat_third")
        for kind in (SUCCEEDED, FAILED)
    }

    assert len(ids) == 6


def test_an_expired_watch_says_why_and_how_far_the_task_had_got() -> None:
    text = build_expiry_payload(
        event_id=event_id(WATCH_ID, EXPIRED),
        created_at=CREATED_AT,
        watch_id=WATCH_ID,
        task_id=TASK_ID,
        metadata={"order": 42},
        upstream_status="in_progress",
        expiry=Expiry(ExpiryReason.DEADLINE_EXCEEDED, "too late"),
    )

    assert json.loads(text) == {
        "id": event_id(WATCH_ID, EXPIRED),
        "type": "watch.expired",
        "timestamp": "2026-11-28T09:30:15Z",
        "data": {
            "watch_id": WATCH_ID,
            "task_id": TASK_ID,
            "status": "expired",
            "upstream_status": "in_progress",
            "error": {"code": "deadline_exceeded", "message": "too late"},
            "metadata": {"order": 42},
        },
    }
