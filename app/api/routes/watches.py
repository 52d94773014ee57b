"""`/v1/watches`: register, read, list and cancel watches; see and replay their deliveries."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import AfterValidator

from app.api import errors
from app.api.deps import CurrentClient, RelayDep
from app.api.registration_counts import note
from app.api.schemas import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_TASK_ID_LENGTH,
    AttemptOut,
    AttemptPage,
    WatchCreate,
    WatchOut,
    WatchPage,
    check_idempotency_key,
    check_task_id,
)
from app.ids import is_id
from app.limits import LimitReachedError
from app.metrics import Registration
from app.registrar import IdempotencyConflict, Registered, RegistrationRefused
from app.relay import Relay
from app.states import CaptureState, WatchState
from app.store import watch_queries

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/watches", tags=["watches"], responses=errors.UNAUTHORIZED)

_NOT_FOUND = "no watch with this id"
#: What `new_id("wat")` makes: watch ids, and so cursors.

_NOT_FOUND_RESPONSE: errors.Responses = {404: errors.error(_NOT_FOUND)}

TaskIdFilter = Annotated[str, AfterValidator(check_task_id)]


@router.post(
    "",
    response_model=WatchOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": WatchOut, "description": "This watch already existed."},
        409: errors.error("The Idempotency-Key was used with a different request."),
        429: errors.error(
            "The client app is over one of its limits (registrations per second, live "
            "watches); `Retry-After` says when to try again."
        ),
        **errors.UNREADABLE_BODY,
        **errors.SECRETS_UNREADABLE,
    },
)
async def register_watch(
    body: WatchCreate,
    request: Request,
    relay: RelayDep,
    client: CurrentClient,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            json_schema_extra={"pattern": "^[ -~]+$"},
            description="Retrying with the same key and body returns the first answer (24 h). "
            "Printable ASCII.",
        ),
        AfterValidator(check_idempotency_key),
    ] = None,
) -> Response:
    """Start watching a task. Registering the same task and callback again returns that watch."""
    try:
        registered = await relay.registrar.register(
            client_id=client.id, request=body, idempotency_key=idempotency_key
        )
    except RegistrationRefused as exc:
        note(request, Registration.REFUSED, exc.reason)
        raise _invalid(exc.field, exc.message) from None
    except IdempotencyConflict as exc:
        note(request, Registration.REFUSED, "idempotency_conflict")
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except LimitReachedError as exc:
        note(request, Registration.RATE_LIMITED, exc.limit)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            exc.message,
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    note(request, _outcome(registered))
    return Response(
        registered.body,
        status_code=status.HTTP_201_CREATED if registered.created else status.HTTP_200_OK,
        media_type="application/json",
        headers={"Location": f"/v1/watches/{registered.watch_id}"},
    )


def _outcome(registered: Registered) -> Registration:
    if registered.replayed:
        return Registration.REPLAYED
    return Registration.CREATED if registered.created else Registration.EXISTING


def _invalid(field: str, message: str) -> HTTPException:
    """Shaped like FastAPI's own validation errors, so clients handle one format."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


@router.get("", responses={400: errors.error("The cursor is not one this API returned.")})
async def list_watches(
    relay: RelayDep,
    client: CurrentClient,
    state: WatchState | None = None,
    task_id: Annotated[TaskIdFilter | None, Query(max_length=MAX_TASK_ID_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> WatchPage:
    """The client's watches, newest first."""
    if cursor is not None and not is_id("wat", cursor):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "cursor is not one this API returned")
    found = await watch_queries.page(
        relay.db,
        client_id=client.id,
        limit=limit + 1,
        before=cursor,
        matching=watch_queries.WatchFilter(state=state, task_id=task_id),
    )
    data = [_out(watch, relay) for watch in found[:limit]]
    return WatchPage(data=data, next_cursor=data[-1].id if len(found) > limit else None)


@router.get("/{watch_id}", responses=_NOT_FOUND_RESPONSE)
async def get_watch(watch_id: str, relay: RelayDep, client: CurrentClient) -> WatchOut:
    _known(watch_id)
    watch = await watch_queries.get(relay.db, client_id=client.id, watch_id=watch_id)
    if watch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    return _out(watch, relay)


@router.delete(
    "/{watch_id}",
    responses={
        **_NOT_FOUND_RESPONSE,
        409: errors.error("The webhook was already delivered or given up on."),
    },
)
async def cancel_watch(watch_id: str, relay: RelayDep, client: CurrentClient) -> WatchOut:
    """Stop polling; no webhook is sent after this. Cancelling twice is harmless."""
    _known(watch_id)
    cancelled = await _transition(
        watch_queries.cancel(relay.db, client_id=client.id, watch_id=watch_id),
        relay,
        conflict="the watch is already {state}; nothing to cancel",
    )
    log.info(
        "watch cancelled",
        extra={"watch_id": watch_id, "task_id": cancelled.task_id, "client_id": client.id},
    )
    return cancelled


@router.get("/{watch_id}/attempts", responses=_NOT_FOUND_RESPONSE)
async def list_attempts(watch_id: str, relay: RelayDep, client: CurrentClient) -> AttemptPage:
    """Every delivery attempt of the watch's webhooks, oldest first."""
    _known(watch_id)
    found = await watch_queries.attempts_of(relay.db, client_id=client.id, watch_id=watch_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    return AttemptPage(data=[AttemptOut.model_validate(attempt) for attempt in found])


@router.post(
    "/{watch_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **_NOT_FOUND_RESPONSE,
        409: errors.error("The task has not ended, or the watch was cancelled."),
    },
)
async def redeliver(watch_id: str, relay: RelayDep, client: CurrentClient) -> WatchOut:
    """Send the final webhook again now, with the same `webhook-id` and body."""
    _known(watch_id)
    watch = await _transition(
        watch_queries.redeliver(relay.db, client_id=client.id, watch_id=watch_id),
        relay,
        conflict="the watch is {state}; it has no webhook to send again",
    )
    relay.deliver_now()
    return watch


def _known(watch_id: str) -> None:
    if not is_id("wat", watch_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)


async def _transition(
    change: Awaitable[watch_queries.Watch | None], relay: Relay, *, conflict: str
) -> WatchOut:
    """Answer a state change: the changed watch, 404 if there is none, 409 if not allowed now."""
    try:
        watch = await change
    except watch_queries.WrongState as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, conflict.format(state=exc.state)) from None
    if watch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    return _out(watch, relay)


def _out(watch: watch_queries.Watch, relay: Relay) -> WatchOut:
    """The watch as the API shows it, with a freshly signed link to its file while it is kept."""
    out = WatchOut.model_validate(watch)
    kept = watch.capture
    if (
        out.capture is not None
        and kept is not None
        and kept.state == CaptureState.STORED
        and kept.expires_at is not None
        and kept.expires_at > datetime.now(UTC)
    ):
        out.capture.url = relay.links.url(watch.id, kept.expires_at)
    return out
