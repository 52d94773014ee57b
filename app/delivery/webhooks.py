"""The webhook events: their types and bodies, frozen when they are created.

A watch ends exactly once: with the task's own end (`task.succeeded`, `task.failed`), or, when
the relay gives up on learning it, with `watch.expired`. Before that, a watch that asked for them
sends `task.updated` events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import TypedDict

from app.delivery.bodies import (
    CapturedVideo,
    CaptureFailure,
    ExpiryReason,
    TaskFailedEvent,
    TaskSucceededEvent,
    TaskUpdatedEvent,
    WatchExpiredEvent,
)
from app.ids import event_id
from app.states import EventState
from app.upstream import TaskSnapshot, TaskStatus, parse_snapshot

if TYPE_CHECKING:
    from app.work import CapturedWatch, PollResult

SUCCEEDED: Final = "task.succeeded"
FAILED: Final = "task.failed"
UPDATED: Final = "task.updated"
EXPIRED: Final = "watch.expired"

#: Sent when the watch ends, whatever it subscribed to: the webhook the relay exists for.
TERMINAL = frozenset({SUCCEEDED, FAILED, EXPIRED})
#: Every event a watch can send (`webhook.verify`, sent before there is a watch, is not one).
EVENT_TYPES = frozenset({SUCCEEDED, FAILED, UPDATED, EXPIRED})
DEFAULT_SUBSCRIPTION = (SUCCEEDED, FAILED)


@dataclass(frozen=True, slots=True)
class Expiry:
    reason: ExpiryReason
    message: str


@dataclass(frozen=True, slots=True)
class CaptureError:
    """Why a succeeded task's result could not be captured (`data.capture_error`)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class CaptureReport:
    """What became of a result: stored (`video`, the body of `data.video`) or not (`error`)."""

    video: CapturedVideo | None
    error: CaptureError | None


#: Strings longer than this that start with `data:` are inline files (Veo returns videos that way,
#: megabytes long); they never travel in a webhook body.
_INLINE_FILE_LIMIT = 1024


def event_type(status: TaskStatus) -> str:
    if status is TaskStatus.SUCCEEDED:
        return SUCCEEDED
    if status is TaskStatus.FAILED:
        return FAILED
    return UPDATED


class _Known(TypedDict, total=False):
    """What the upstream told of a task, when it did; the relay's link replaces the upstream's."""

    progress: float
    url: str


class _Captured(TypedDict, total=False):
    video: CapturedVideo
    capture_error: CaptureFailure


def build_payload(
    *,
    event_id: str,
    created_at: datetime,
    watch_id: str,
    task_id: str,
    metadata: Any,
    snapshot: TaskSnapshot,
    capture: CaptureReport | None = None,
) -> str:
    """`capture` is what became of the result of a succeeded task, when the relay captured it:
    its own link replaces the upstream's, which is kept as `video.source_url`."""
    known: _Known = {}
    if snapshot.progress is not None:
        known["progress"] = snapshot.progress
    if snapshot.url is not None and is_link(snapshot.url):
        known["url"] = snapshot.url
    timestamp = _timestamp(created_at)
    upstream = without_inline_files(snapshot.body)
    status = snapshot.status
    if status is TaskStatus.SUCCEEDED:
        captured: _Captured = {}
        if capture is not None and capture.video is not None:
            known["url"] = capture.video["url"]
            captured["video"] = capture.video
        if capture is not None and capture.error is not None:
            error = capture.error
            captured["capture_error"] = {"code": error.code, "message": error.message}
        succeeded: TaskSucceededEvent = {
            "id": event_id,
            "type": SUCCEEDED,
            "timestamp": timestamp,
            "data": {
                "watch_id": watch_id,
                "task_id": task_id,
                "status": status,
                "upstream_status": snapshot.upstream_status,
                **known,
                **captured,
                "metadata": metadata,
                "upstream": upstream,
            },
        }
        return _serialized(succeeded)
    if status is TaskStatus.FAILED:
        reason = snapshot.error
        assert reason is not None  # a failed snapshot always says why
        failed: TaskFailedEvent = {
            "id": event_id,
            "type": FAILED,
            "timestamp": timestamp,
            "data": {
                "watch_id": watch_id,
                "task_id": task_id,
                "status": status,
                "upstream_status": snapshot.upstream_status,
                **known,
                "error": {"code": reason.code, "message": reason.message},
                "metadata": metadata,
                "upstream": upstream,
            },
        }
        return _serialized(failed)
    updated: TaskUpdatedEvent = {
        "id": event_id,
        "type": UPDATED,
        "timestamp": timestamp,
        "data": {
            "watch_id": watch_id,
            "task_id": task_id,
            "status": status,
            "upstream_status": snapshot.upstream_status,
            **known,
            "metadata": metadata,
            "upstream": upstream,
        },
    }
    return _serialized(updated)


def build_expiry_payload(
    *,
    event_id: str,
    created_at: datetime,
    watch_id: str,
    task_id: str,
    metadata: Any,
    upstream_status: str | None,
    expiry: Expiry,
) -> str:
    """`upstream_status` is the last status seen, if any: it tells how far the task had got."""
    expired: WatchExpiredEvent = {
        "id": event_id,
        "type": EXPIRED,
        "timestamp": _timestamp(created_at),
        "data": {
            "watch_id": watch_id,
            "task_id": task_id,
            "status": "expired",
            "upstream_status": upstream_status,
            "error": {"code": expiry.reason, "message": expiry.message},
            "metadata": metadata,
        },
    }
    return _serialized(expired)


def outbox_row(result: PollResult, now: datetime) -> dict[str, Any]:
    """The outbox row of the webhook that tells of `result`; its id is derived, not drawn, so
    writing it twice is impossible."""
    watch, snapshot = result.watch, result.snapshot
    seq = watch.event_seq + 1
    described = {
        "created_at": now,
        "watch_id": watch.id,
        "task_id": watch.task_id,
        "metadata": watch.metadata,
    }
    kind, new_id = event_of(result)
    if result.expiry is not None:
        payload = build_expiry_payload(
            event_id=new_id,
            upstream_status=watch.upstream_status,
            expiry=result.expiry,
            **described,
        )
    else:
        assert snapshot is not None
        payload = build_payload(event_id=new_id, snapshot=snapshot, **described)
    return _row(new_id, kind, payload, watch.id, watch.client_id, watch.callback_url, seq, now)


def event_of(result: PollResult) -> tuple[str, str]:
    """The type and the id of the webhook that tells of `result`."""
    watch, snapshot = result.watch, result.snapshot
    if result.expiry is not None:
        return EXPIRED, event_id(watch.id, EXPIRED)
    assert snapshot is not None
    kind = event_type(snapshot.status)
    return kind, event_id(watch.id, kind if result.final else f"{kind}:{watch.event_seq + 1}")


def captured_event_id(watch_id: str) -> str:
    """The id of the `task.succeeded` of a watch whose result was captured."""
    return event_id(watch_id, SUCCEEDED)


def captured_outbox_row(
    watch: CapturedWatch, upstream_body: Any, capture: CaptureReport, now: datetime
) -> dict[str, Any]:
    """The outbox row of the `task.succeeded` of a watch whose result was captured (or could
    not be): made once the capture is over, from the task as the upstream described it."""
    seq = watch.event_seq + 1
    new_id = captured_event_id(watch.id)
    payload = build_payload(
        event_id=new_id,
        created_at=now,
        watch_id=watch.id,
        task_id=watch.task_id,
        metadata=watch.metadata,
        snapshot=parse_snapshot(upstream_body),
        capture=capture,
    )
    return _row(new_id, SUCCEEDED, payload, watch.id, watch.client_id, watch.callback_url, seq, now)


def _row(
    new_id: str,
    kind: str,
    payload: str,
    watch_id: str,
    client_id: str,
    callback_url: str,
    seq: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": new_id,
        "watch_id": watch_id,
        "client_id": client_id,
        "seq": seq,
        "type": kind,
        "callback_url": callback_url,
        "payload": payload,
        "state": EventState.PENDING,
        "attempts": 0,
        "round_start": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _timestamp(created_at: datetime) -> str:
    return created_at.isoformat().replace("+00:00", "Z")


def _serialized(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def is_link(url: str) -> bool:
    """Only real links are useful to a receiver: not inline data, not Veo's `"expired"` marker."""
    return url.startswith(("https://", "http://"))


def without_inline_files(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_inline_files(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_inline_files(item) for item in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > _INLINE_FILE_LIMIT:
        media_type = value[5:].split(";", 1)[0].split(",", 1)[0] or "application/octet-stream"
        return f"[inline {media_type} omitted: {len(value)} characters]"
    return value
