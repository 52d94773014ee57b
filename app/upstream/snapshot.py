"""Turning whatever the upstream answers into one normalized snapshot of a task.

The upstream's documented shape is only part of the truth (see NOTES.md in the upstream docs):
statuses vary in name and case, bodies may come wrapped in a `{"code", "data"}` envelope, and the
failure reason hides in different fields depending on the model.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)


_SUCCEEDED = {"succeeded", "completed", "success"}
_FAILED = {"failed", "failure", "error", "cancelled", "canceled"}
_WAITING = {"queued", "pending", "submitted", "not_start", "unknown"}


def normalize_status(raw: str) -> TaskStatus:
    """Any value we do not know means the task is still running: never end a watch on a guess."""
    value = raw.strip().lower()
    if value in _SUCCEEDED:
        return TaskStatus.SUCCEEDED
    if value in _FAILED:
        return TaskStatus.FAILED
    if value in _WAITING:
        return TaskStatus.QUEUED
    return TaskStatus.IN_PROGRESS


@dataclass(frozen=True, slots=True)
class TaskError:
    code: str | int | None
    message: str


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    status: TaskStatus
    upstream_status: str
    progress: float | None
    url: str | None
    error: TaskError | None
    body: dict[str, Any]
    #: When the upstream says the task ended, if its answer tells (terminal snapshots only).
    finished_at: datetime | None = None


class SnapshotError(ValueError):
    """The upstream answered 200 with something that is not a task."""


def parse_snapshot(body: Any) -> TaskSnapshot:
    if not isinstance(body, dict):
        raise SnapshotError("expected a JSON object")
    data = body.get("data")
    task: dict[str, Any] = data if isinstance(data, dict) else body
    raw_status = task.get("status")
    if not isinstance(raw_status, str) or not raw_status.strip():
        raise SnapshotError("the answer has no status")
    status = normalize_status(raw_status)
    url = task.get("url")
    return TaskSnapshot(
        status=status,
        upstream_status=text(raw_status),
        progress=_progress(task.get("progress")),
        url=text(url) if isinstance(url, str) and url else None,
        error=_error(task) if status is TaskStatus.FAILED else None,
        body=body,
        finished_at=_finished_at(task) if status.terminal else None,
    )


def text(value: str) -> str:
    """An upstream's string as the relay keeps it: without NUL, which PostgreSQL refuses in
    text, so that one odd answer cannot sink the write-back of the whole batch it came in."""
    return value.replace("\x00", "\ufffd")


#: Where answers put the moment a task ended: `finish_time` in the envelope of the code the
#: upstream is built on, `completed_at` in OpenAI's video object (Sora's `metadata`).
_FINISHED_FIELDS = ("finish_time", "finished_at", "completed_at")
#: A larger epoch number counts milliseconds, not seconds (that is past the year 5000).
_EPOCH_MILLISECONDS = 1e11


def _finished_at(task: dict[str, Any]) -> datetime | None:
    metadata = task.get("metadata")
    for holder in (task, metadata if isinstance(metadata, dict) else {}):
        for name in _FINISHED_FIELDS:
            moment = _moment(holder.get(name))
            if moment is not None:
                return moment
    return None


def _moment(value: Any) -> datetime | None:
    """Epoch seconds (or milliseconds), or ISO 8601 (UTC unless it says otherwise); `0` and
    anything unreadable mean not known, as the upstream writes 0 for a time not yet reached."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        seconds = value / 1000 if value > _EPOCH_MILLISECONDS else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return None


def _progress(value: Any) -> float | None:
    """A finite number, or None: "nan%" reads as a float, but is no progress (nor JSON)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _code(value: Any) -> str | int | None:
    """A failure code as the webhook documents it: a string or an integer (a JSON `true` is an
    `int` to Python, and is not one)."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def _error(task: dict[str, Any]) -> TaskError:
    error = task.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        if isinstance(message, str) and message:
            return TaskError(code=_code(code), message=message)
    elif isinstance(error, str) and error:
        return TaskError(code=None, message=error)
    reason = task.get("failure_reason")
    if isinstance(reason, str) and reason:
        return TaskError(code=None, message=reason)
    metadata = task.get("metadata")
    output = metadata.get("output") if isinstance(metadata, dict) else None
    if isinstance(output, dict) and isinstance(output.get("message"), str) and output["message"]:
        return TaskError(code=_code(output.get("code")), message=output["message"])
    return TaskError(code=None, message="the upstream reported the task as failed without a reason")
