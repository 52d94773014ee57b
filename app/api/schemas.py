"""Request and response bodies; their docstrings and descriptions feed the OpenAPI spec."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from app.states import CaptureState, WatchState
from app.upstream.client import DOT_SEGMENTS

MAX_TASK_ID_LENGTH = 2048
MAX_METADATA_BYTES = 16 * 1024
#: Levels of objects and arrays in metadata, the outer object included: far more than any app
#: needs, far fewer than the JSON serializers on its way to a webhook can take.
MAX_METADATA_DEPTH = 32
MAX_IDEMPOTENCY_KEY_LENGTH = 255
#: A request body larger than this is refused (413) before it is parsed; a valid one is far smaller.
MAX_BODY_BYTES = 1024 * 1024

EventType = Literal["task.succeeded", "task.failed", "task.updated"]
MAX_UPSTREAM_KEY_LENGTH = 512
#: Longer than any upstream keeps a task (Sora: 24 h).
MAX_TIMEOUT = 7 * 24 * 3600
MAX_POLL_INTERVAL = 3600


class WatchCreate(BaseModel):
    """Watch an upstream task and call `callback_url` when it ends."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_TASK_ID_LENGTH,
            description="The upstream task id, exactly as the upstream returned it on submit.",
        ),
    ]
    callback_url: Annotated[
        str, Field(min_length=1, description="Where the webhook is POSTed (http or https).")
    ]
    metadata: dict[str, Any] | None = Field(
        None,
        description=f"Opaque JSON object echoed in the webhook; at most {MAX_METADATA_BYTES} "
        "bytes once serialized.",
    )
    events: list[EventType] | None = Field(
        None,
        min_length=1,
        description="Events to receive. The final one (`task.succeeded` or `task.failed`) is "
        "always sent; add `task.updated` to also get each status or progress change before it.",
    )
    upstream_api_key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_UPSTREAM_KEY_LENGTH,
        json_schema_extra={"writeOnly": True},
        description="The upstream key the task was submitted with, when it is not the relay's "
        "own: a task is visible only to the account that submitted it. Stored encrypted, never "
        "returned.",
    )
    timeout: float | None = Field(
        None,
        gt=0,
        le=MAX_TIMEOUT,
        description="Seconds after which the watch ends with `watch.expired` "
        "(`deadline_exceeded`) if the task has not ended; default `RELAY_WATCH_TIMEOUT`.",
    )
    poll_interval: float | None = Field(
        None,
        ge=1,
        le=MAX_POLL_INTERVAL,
        description="Seconds between polls of this task; at least `RELAY_MIN_POLL_INTERVAL` "
        "(never under 1). Default `RELAY_POLL_INTERVAL`.",
    )
    verify_callback: bool = Field(
        False,
        strict=True,
        description="Prove the callback is yours before the watch is registered: the relay POSTs "
        "it a signed `webhook.verify` event and registers the watch only if the answer is a 2xx "
        'whose body echoes `data.challenge` (`{"challenge": "<token>"}` or the bare token); '
        "otherwise `422`, and nothing is stored.",
    )

    @field_validator("task_id", "callback_url", "upstream_api_key", mode="before")
    @classmethod
    def _is_text(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            refuse_surrogates(info.field_name or "a string", value)
        return value

    @field_validator("upstream_api_key")
    @classmethod
    def _key_is_printable(cls, value: str | None) -> str | None:
        """It is sent in an HTTP header, which holds ASCII: any other character would fail
        every poll of the watch, not its registration."""
        if value is not None and not (
            value.isascii() and value.isprintable() and not any(c.isspace() for c in value)
        ):
            raise ValueError(
                "upstream_api_key must be printable ASCII, without whitespace or control characters"
            )
        return value

    @field_validator("task_id")
    @classmethod
    def _task_id_is_printable(cls, value: str) -> str:
        return check_task_id(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            if _nesting(value) > MAX_METADATA_DEPTH:
                raise ValueError(
                    f"metadata nests objects and arrays more than {MAX_METADATA_DEPTH} levels deep"
                )
            try:
                text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            except ValueError:
                raise ValueError(
                    "metadata must not hold NaN or Infinity: JSON has no such numbers"
                ) from None
            refuse_surrogates("metadata", text)
            size = len(text.encode())
            if size > MAX_METADATA_BYTES:
                raise ValueError(
                    f"metadata is {size} bytes once serialized; the limit is {MAX_METADATA_BYTES}"
                )
        return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def refuse_surrogates(name: str, value: str) -> None:
    """JSON can escape half of a UTF-16 surrogate pair alone (`"\\ud800"`), which is no text:
    it cannot be stored, logged or sent on."""
    if not value.isascii() and (found := _SURROGATE.search(value)):
        raise ValueError(
            f"{name} holds a lone UTF-16 surrogate (U+{ord(found.group()):04X}), which is not "
            "valid Unicode"
        )


def check_task_id(value: str) -> str:
    """A task id as the upstream could have issued it; the listing filter applies it too."""
    if value != value.strip() or not value.isprintable():
        raise ValueError("task_id must not contain whitespace at its ends or control characters")
    if value in DOT_SEGMENTS:
        raise ValueError("task_id cannot be '.' or '..'")
    return value


def check_idempotency_key(value: str | None) -> str | None:
    """Printable ASCII, as the header is defined (a structured-field string)."""
    if value is not None and not all(" " <= char <= "~" for char in value):
        raise ValueError("Idempotency-Key must be printable ASCII")
    return value


def _nesting(value: object) -> int:
    """How many levels of objects and arrays `value` has, counted up to one past the limit."""
    depth = 0
    level = [value]
    while depth <= MAX_METADATA_DEPTH:
        inner: list[object] = []
        nested = False
        for item in level:
            if isinstance(item, dict):
                inner.extend(item.values())
                nested = True
            elif isinstance(item, list):
                inner.extend(item)
                nested = True
        if not nested:
            break
        depth += 1
        level = inner
    return depth


class AttemptOut(BaseModel):
    """One try at delivering one event."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    event_type: str
    attempted_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(description="Why the attempt failed: HTTP status, timeout, …")
    response_excerpt: str | None = Field(description="The start of the receiver's answer.")
    next_attempt_at: datetime | None = Field(description="When the event was due again.")


class AttemptPage(BaseModel):
    data: list[AttemptOut]


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="Re-queue events given up on created since then.")


class RecoverResult(BaseModel):
    recovered: int = Field(description="How many events were queued again.")


class EventOut(BaseModel):
    """The webhook event of a watch, once it has ended."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Also the `webhook-id` header; the same across retries.")
    type: str = Field(description="task.succeeded, task.failed or watch.expired.")
    state: str = Field(description="pending, delivered, failed or cancelled.")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


class CaptureErrorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str = Field(
        description="link_expired, result_expired, download_failed, timeout, too_large, "
        "not_a_video, size_mismatch, bad_result, upstream_key or internal_error."
    )
    message: str


class CaptureOut(BaseModel):
    """The capture of a succeeded task's result: the relay's own copy, served at `url`."""

    model_config = ConfigDict(from_attributes=True)

    state: CaptureState = Field(
        description="pending (being obtained), stored, failed, or expired (the file deleted)."
    )
    url: str | None = Field(
        None,
        description="A freshly signed link to the file while it is kept; null otherwise.",
    )
    source_url: str | None = Field(description="The upstream's link, if it gave one.")
    content_type: str | None
    size_bytes: int | None
    sha256: str | None = Field(description="Hex SHA-256 of the stored file.")
    expires_at: datetime | None = Field(description="When the file is deleted.")
    error: CaptureErrorOut | None = Field(
        description="Why the last try failed; for a failed capture, why it was given up on."
    )


class WatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    task_id: str
    callback_url: str
    metadata: dict[str, Any] | None
    events: list[str] = Field(description="The events this watch sends.")
    state: WatchState
    task_status: str | None = Field(
        description="Last normalized upstream status: queued, in_progress, succeeded or failed."
    )
    upstream_status: str | None = Field(description="Last status exactly as the upstream said it.")
    progress: float | None
    poll_count: int
    last_polled_at: datetime | None
    last_poll_error: str | None
    poll_interval: float | None = Field(
        description="Seconds between polls asked for at registration; null: the relay's default."
    )
    deadline_at: datetime = Field(
        description="When the watch ends with `watch.expired` if its task has not ended."
    )
    created_at: datetime
    updated_at: datetime
    event: EventOut | None
    capture: CaptureOut | None = Field(
        None, description="The result's capture, once the task has succeeded (if enabled)."
    )


class WatchPage(BaseModel):
    data: list[WatchOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class ClientOut(BaseModel):
    id: str
    name: str
    signing_secret: str = Field(
        description="The `whsec_` secret that signs this client's webhooks."
    )
    previous_secret_until: datetime | None = Field(
        None,
        description="After a rotation of the secret, until when webhooks also carry a signature "
        "made with the previous one; null when they no longer do.",
    )


class ClientAppOut(BaseModel):
    """A client app as its operator sees it: its key and secrets are never shown again."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = Field(
        description="When its key was revoked; null while it works."
    )
    previous_secret_until: datetime | None = Field(
        description="Until when the secret replaced by the last rotation still signs webhooks, "
        "beside the current one; null when it no longer does."
    )


class ClientAppPage(BaseModel):
    data: list[ClientAppOut]


class ClientAppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=100,
        description="What the operator calls the app; unique, one line of printable characters.",
    )


class ClientAppCredentials(BaseModel):
    """What was just made for an app, shown this once: the relay keeps only a digest of the
    key, so it cannot be shown again (the app can fetch its secret from `GET /v1/client`)."""

    client: ClientAppOut
    api_key: str | None = Field(None, description="The new API key, if one was made.")
    signing_secret: str | None = Field(None, description="The new signing secret, if one was made.")


class Health(BaseModel):
    status: str


class ErrorOut(BaseModel):
    """A refusal, said in words (an invalid request gets a list of what is wrong instead)."""

    detail: str
