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
from app.upstream import TaskSnapshot, TaskStatus

if TYPE_CHECKING:
    from app.work import PollResult

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
) -> str:
    data: dict[str, Any] = {
        "watch_id": watch_id,
        "task_id": task_id,
        "status": snapshot.status.value,
        "upstream_status": snapshot.upstream_status,
    }
    if snapshot.progress is not None:
        data["progress"] = snapshot.progress
    if snapshot.url is not None and _is_link(snapshot.url):
        data["url"] = snapshot.url
    if snapshot.error is not None:
        data["error"] = {"code": snapshot.error.code, "message": snapshot.error.message}
    data["metadata"] = metadata
    data["upstream"] = _without_inline_files(snapshot.body)
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
    return {
        "id": new_id,
        "watch_id": watch.id,
        "client_id": watch.client_id,
        "seq": seq,
        "type": kind,
        "callback_url": watch.callback_url,
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


def _is_link(url: str) -> bool:
    """Only real links are useful to a receiver: not inline data, not Veo's `"expired"` marker."""
    return url.startswith(("https://", "http://"))


def _without_inline_files(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_inline_files(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_inline_files(item) for item in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > _INLINE_FILE_LIMIT:
        media_type = value[5:].split(";", 1)[0].split(",", 1)[0] or "application/octet-stream"
        return f"[inline {media_type} omitted: {len(value)} characters]"
    return value
