"""The webhooks the relay sends, for the `webhooks` section of the OpenAPI document.

These routes are never served: they describe the requests the relay makes, so that a receiver can
generate its types from the same document as the API's clients. The bodies are the types the
builders fill (`app.delivery.bodies`); the headers and answers are the deliverer's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from app.delivery import bodies
from app.delivery.ownership import CHALLENGE_TIMEOUT, VERIFY_EVENT
from app.delivery.webhooks import EXPIRED, FAILED, SUCCEEDED, UPDATED
from app.transport import USER_AGENT

router = APIRouter(tags=["webhooks"])

_BASE64 = "[A-Za-z0-9+/]+={0,2}"


class SignedHeaders(BaseModel):
    """The Standard Webhooks headers: verify them with any of the spec's libraries."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    webhook_id: Annotated[str, Field(pattern=r"^msg_(verify_[0-9a-f]{24}|[0-9a-f]{32})$")]
    """The event's id, as the body's `id`: the same on every retry of an event, so a receiver
    can ignore duplicates (delivery is at least once)."""
    webhook_timestamp: Annotated[str, Field(pattern=r"^[0-9]+$")]
    """When this attempt was signed, in seconds since the Unix epoch: new on each retry. The
    libraries refuse a timestamp more than 5 minutes off."""
    webhook_signature: Annotated[str, Field(pattern=rf"^v1,{_BASE64}( v1,{_BASE64})*$")]
    """`v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`, keyed with
    the base64-decoded part of the client app's `whsec_` secret (`GET /v1/client`). While a
    rotated secret's overlap lasts, two signatures separated by a space: one verifying is
    enough."""
    user_agent: Annotated[str, Field(pattern=f"^{USER_AGENT}$")]
    """The relay's name, to tell its requests apart in a receiver's logs."""


_RETRY_AFTER = {
    "description": "How long to wait before the next attempt: seconds, or an HTTP date.",
    "schema": {"type": "string"},
}
_DELIVERY_ANSWERS: dict[int | str, dict[str, Any]] = {
    "2XX": {"description": "Accepted as well: any 2xx status, whatever the body."},
    410: {
        "description": "Gone: delivery of this event stops at once (the watch shows `failed`; "
        "`redeliver` or `recover` sends it again)."
    },
    429: {
        "description": "Retried after the wait `Retry-After` gives (kept between 1 s and 24 h), "
        "or on the retry schedule without one.",
        "headers": {"Retry-After": _RETRY_AFTER},
    },
    503: {
        "description": "Retried after the wait `Retry-After` gives (kept between 1 s and 24 h), "
        "or on the retry schedule without one.",
        "headers": {"Retry-After": _RETRY_AFTER},
    },
    "default": {
        "description": "Anything else is retried on `RELAY_RETRY_SCHEDULE`, with jitter: another "
        "status, a redirect (never followed), no answer within `RELAY_DELIVERY_TIMEOUT`, a "
        "connection error. After the last attempt the event is dead-lettered: the watch shows "
        "`failed`, and `redeliver` or `recover` sends it again."
    },
}
_ACCEPTED = (
    "Accepted: the event is delivered, and not sent again unless redelivered through the API."
)

Signed = Annotated[SignedHeaders, Header()]


@router.post(
    SUCCEEDED,
    operation_id="task_succeeded",
    status_code=204,
    response_description=_ACCEPTED,
    responses=_DELIVERY_ANSWERS,
)
def task_succeeded(event: bodies.TaskSucceededEvent, headers: Signed) -> None:
    """The task succeeded. With capture on (`RELAY_CAPTURE`, the default), `data.url` is the
    relay's own link to the stored video and `data.video` describes it (check `sha256` after
    downloading); if the result could not be captured, `data.capture_error` says why and
    `data.url` is the upstream's link, if it gave one. Sent to every watch."""


@router.post(
    FAILED,
    operation_id="task_failed",
    status_code=204,
    response_description=_ACCEPTED,
    responses=_DELIVERY_ANSWERS,
)
def task_failed(event: bodies.TaskFailedEvent, headers: Signed) -> None:
    """The task failed; `data.error` says why, as the upstream put it. Sent to every watch."""


@router.post(
    UPDATED,
    operation_id="task_updated",
    status_code=204,
    response_description=_ACCEPTED,
    responses=_DELIVERY_ANSWERS,
)
def task_updated(event: bodies.TaskUpdatedEvent, headers: Signed) -> None:
    """The task's status or progress changed. Sent only to watches registered with
    `"events": ["task.updated", …]`, each time either changes; a watch's events arrive one at a
    time, in order, and none after its final event."""


@router.post(
    EXPIRED,
    operation_id="watch_expired",
    status_code=204,
    response_description=_ACCEPTED,
    responses=_DELIVERY_ANSWERS,
)
def watch_expired(event: bodies.WatchExpiredEvent, headers: Signed) -> None:
    """The relay gave up on learning how the task ended; `data.error.code` says why. It ends the
    watch as `task.succeeded` or `task.failed` would have: sent to every watch."""


@router.post(
    VERIFY_EVENT,
    operation_id="webhook_verify",
    response_model=bodies.VerifyAnswer,
    response_description="Confirmed: any 2xx status whose body is the challenge, as "
    '`{"challenge": "…"}` or the bare token. The watch is registered.',
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        "default": {
            "description": f"Anything else, or no answer within {CHALLENGE_TIMEOUT:g} s (or "
            "`RELAY_DELIVERY_TIMEOUT` if shorter): the registration is refused (`422`, saying "
            "what was sent and what came back), and nothing is stored."
        },
    },
)
def webhook_verify(event: bodies.WebhookVerifyEvent, headers: Signed) -> None:
    """Sent before a watch registered with `"verify_callback": true` is stored, to prove the
    callback is yours; signed like every webhook, never retried."""
