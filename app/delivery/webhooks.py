"""The webhook events: their types and bodies, frozen when they are created.

A watch ends exactly once: with the task's own end (`task.succeeded`, `task.failed`), or, when
the relay gives up on learning it, with `watch.expired`. Before that, a watch that asked for them
sends `task.updated` events.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.ids import event_id
from app.states import EventState
from app.upstream import TaskSnapshot, TaskStatus, parse_snapshot

if TYPE_CHECKING:
    from app.work import CapturedWatch, PollResult

SUCCEEDED = "task.succeeded"
FAILED = "task.failed"
UPDATED = "task.updated"
EXPIRED = "watch.expired"

#: Sent when the watch ends, whatever it subscribed to: the webhook the relay exists for.
TERMINAL = frozenset({SUCCEEDED, FAILED, EXPIRED})
DEFAULT_SUBSCRIPTION = (SUCCEEDED, FAILED)


class ExpiryReason(enum.StrEnum):
    TASK_NOT_FOUND = "task_not_found"
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"
    DEADLINE_EXCEEDED = "deadline_exceeded"


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

    video: dict[str, Any] | None
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
    data: dict[str, Any] = {
        "watch_id": watch_id,
        "task_id": task_id,
        "status": snapshot.status.value,
        "upstream_status": snapshot.upstream_status,
    }
    if snapshot.progress is not None:
        data["progress"] = snapshot.progress
    source_url = snapshot.url if snapshot.url is not None and is_link(snapshot.url) else None
    if capture is not None and capture.video is not None:
        data["url"] = capture.video["url"]
        data["video"] = capture.video
    elif source_url is not None:
        data["url"] = source_url
    if capture is not None and capture.error is not None:
        data["capture_error"] = {"code": capture.error.code, "message": capture.error.message}
    if snapshot.error is not None:
        data["error"] = {"code": snapshot.error.code, "message": snapshot.error.message}
    data["metadata"] = metadata
    data["upstream"] = without_inline_files(snapshot.body)
    return _envelope(event_id, event_type(snapshot.status), created_at, data)


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
    data: dict[str, Any] = {
        "watch_id": watch_id,
        "task_id": task_id,
        "status": "expired",
        "upstream_status": upstream_status,
        "error": {"code": expiry.reason.value, "message": expiry.message},
        "metadata": metadata,
    }
    return _envelope(event_id, EXPIRED, created_at, data)


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
    if result.expiry is not None:
        kind = EXPIRED
        new_id = event_id(watch.id, kind)
        payload = build_expiry_payload(
            event_id=new_id,
            upstream_status=watch.upstream_status,
            expiry=result.expiry,
            **described,
        )
    else:
        assert snapshot is not None
        kind = event_type(snapshot.status)
        new_id = event_id(watch.id, kind if result.final else f"{kind}:{seq}")
        payload = build_payload(event_id=new_id, snapshot=snapshot, **described)
    return _row(new_id, kind, payload, watch.id, watch.client_id, watch.callback_url, seq, now)


def captured_outbox_row(
    watch: CapturedWatch, upstream_body: Any, capture: CaptureReport, now: datetime
) -> dict[str, Any]:
    """The outbox row of the `task.succeeded` of a watch whose result was captured (or could
    not be): made once the capture is over, from the task as the upstream described it."""
    seq = watch.event_seq + 1
    new_id = event_id(watch.id, SUCCEEDED)
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


def _envelope(event_id: str, kind: str, created_at: datetime, data: dict[str, Any]) -> str:
    body = {
        "id": event_id,
        "type": kind,
        "timestamp": created_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
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
