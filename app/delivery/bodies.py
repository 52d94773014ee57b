"""What each webhook's body holds, as types.

The builders (`webhooks.py`, `ownership.py`) fill these and mypy holds them to it; the OpenAPI
document's `webhooks` section is generated from the same classes. So the document cannot promise
a field the relay does not send, nor miss one it does. They are `TypedDict`s, not models: a body
is built once, as plain JSON, on the hot path, and costs nothing more for being typed.
(pydantic reads `typing_extensions.TypedDict` only, on Python before 3.12.)
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from app.upstream import TaskStatus

_DOCUMENTED = ConfigDict(use_attribute_docstrings=True)

EventId = Annotated[str, Field(pattern=r"^msg_[0-9a-f]{32}$")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Link = Annotated[str, Field(json_schema_extra={"format": "uri"})]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(description="The `metadata` the watch was registered with, as it was given."),
]
Upstream = Annotated[
    dict[str, Any],
    Field(
        description="The upstream's answer that ended the task (or changed it), as it came; "
        "inline files (`data:` URIs) are replaced by a short marker."
    ),
]


class ExpiryReason(enum.StrEnum):
    """`task_not_found`: the upstream did not know the task for `RELAY_NOT_FOUND_GRACE` seconds
    in a row; `upstream_unauthorized`: it refused the key on 3 polls in a row;
    `deadline_exceeded`: the task had not ended by the watch's `deadline_at`."""

    TASK_NOT_FOUND = "task_not_found"
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"
    DEADLINE_EXCEEDED = "deadline_exceeded"


@with_config(_DOCUMENTED)
class CapturedVideo(TypedDict):
    """The task's result, captured: the relay's own copy, served behind a signed link."""

    url: Link
    """The relay's link to the file: no API key needed, `GET` and `HEAD`, `Range` honoured."""
    source_url: Link | None
    """Where the upstream offered the file; `null` for a file it returned inline."""
    content_type: str
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """Hex digest of the file's bytes: check it after downloading."""
    expires_at: Timestamp
    """When the link stops working (`410`) and the file is deleted."""


@with_config(_DOCUMENTED)
class CaptureFailure(TypedDict):
    """Why the result could not be captured; the event went out without it."""

    code: str
    """`link_expired`, `result_expired`, `download_failed`, `timeout`, `too_large`,
    `not_a_video`, `size_mismatch`, `bad_result`, `upstream_key` or `internal_error`."""
    message: str


@with_config(_DOCUMENTED)
class TaskFailure(TypedDict):
    """Why the task failed, taken from wherever the upstream put the reason."""

    code: str | int | None
    """As the upstream gave it: a number, a string, or `null` when it gave none."""
    message: str


@with_config(_DOCUMENTED)
class WatchExpiry(TypedDict):
    """Why the relay gave up on learning how the task ended."""

    code: ExpiryReason
    message: str


@with_config(_DOCUMENTED)
class TaskSucceededData(TypedDict):
    watch_id: str
    task_id: str
    status: Literal[TaskStatus.SUCCEEDED]
    upstream_status: str
    """The status exactly as the upstream wrote it."""
    progress: NotRequired[float]
    url: NotRequired[Link]
    """The relay's link to the captured video; without a capture, the upstream's own link, if
    it gave one."""
    video: NotRequired[CapturedVideo]
    """Present when the result was captured."""
    capture_error: NotRequired[CaptureFailure]
    """Present when the result could not be captured."""
    metadata: Metadata
    upstream: Upstream


@with_config(_DOCUMENTED)
class TaskFailedData(TypedDict):
    watch_id: str
    task_id: str
    status: Literal[TaskStatus.FAILED]
    upstream_status: str
    """The status exactly as the upstream wrote it."""
    progress: NotRequired[float]
    url: NotRequired[Link]
    """The upstream's link, in the rare case it gave one with a failure."""
    error: TaskFailure
    metadata: Metadata
    upstream: Upstream


@with_config(_DOCUMENTED)
class TaskUpdatedData(TypedDict):
    watch_id: str
    task_id: str
    status: Literal[TaskStatus.QUEUED, TaskStatus.IN_PROGRESS]
    upstream_status: str
    """The status exactly as the upstream wrote it."""
    progress: NotRequired[float]
    """Percent done, when the upstream says."""
    url: NotRequired[Link]
    """The upstream's link, if it gave one before the end."""
    metadata: Metadata
    upstream: Upstream


@with_config(_DOCUMENTED)
class WatchExpiredData(TypedDict):
    watch_id: str
    task_id: str
    status: Literal["expired"]
    upstream_status: str | None
    """The last status the upstream gave, or `null` if it never gave one."""
    error: WatchExpiry
    metadata: Metadata


@with_config(_DOCUMENTED)
class WebhookVerifyData(TypedDict):
    challenge: str
    """Answer with it: `{"challenge": "…"}` or the bare token, with a 2xx status."""
    callback_url: Link
    """The callback being registered."""


@with_config(_DOCUMENTED)
class TaskSucceededEvent(TypedDict):
    """The task succeeded."""

    id: EventId
    """The same as the `webhook-id` header: one per event, kept across retries."""
    type: Literal["task.succeeded"]
    timestamp: Timestamp
    """When the event was created (not when this attempt was sent)."""
    data: TaskSucceededData


@with_config(_DOCUMENTED)
class TaskFailedEvent(TypedDict):
    """The task failed."""

    id: EventId
    """The same as the `webhook-id` header: one per event, kept across retries."""
    type: Literal["task.failed"]
    timestamp: Timestamp
    """When the event was created (not when this attempt was sent)."""
    data: TaskFailedData


@with_config(_DOCUMENTED)
class TaskUpdatedEvent(TypedDict):
    """The task's status or progress changed (sent only to watches that asked for it)."""

    id: EventId
    """The same as the `webhook-id` header: one per event, kept across retries."""
    type: Literal["task.updated"]
    timestamp: Timestamp
    """When the event was created (not when this attempt was sent)."""
    data: TaskUpdatedData


@with_config(_DOCUMENTED)
class WatchExpiredEvent(TypedDict):
    """The relay gave up on learning how the task ended."""

    id: EventId
    """The same as the `webhook-id` header: one per event, kept across retries."""
    type: Literal["watch.expired"]
    timestamp: Timestamp
    """When the event was created (not when this attempt was sent)."""
    data: WatchExpiredData


@with_config(_DOCUMENTED)
class WebhookVerifyEvent(TypedDict):
    """The challenge that proves a callback is yours (`"verify_callback": true`)."""

    id: Annotated[str, Field(pattern=r"^msg_verify_[0-9a-f]{24}$")]
    """The same as the `webhook-id` header; a new one for each challenge."""
    type: Literal["webhook.verify"]
    timestamp: Timestamp
    """When the challenge was sent."""
    data: WebhookVerifyData


@with_config(_DOCUMENTED)
class VerifyAnswer(TypedDict):
    """The answer that confirms a callback (the bare challenge as the body does too)."""

    challenge: str
