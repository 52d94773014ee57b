"""`/v1/watches`: register, read, list and cancel watches."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from app import callbacks
from app.api.deps import CurrentClient, RelayDep
from app.api.schemas import WatchCreate, WatchOut, WatchPage
from app.states import WatchState
from app.store import watches

router = APIRouter(prefix="/v1/watches", tags=["watches"])

_NOT_FOUND = "no watch with this id"
_CURSOR = re.compile(r"^wat_[0-9a-f]{28}$")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": WatchOut, "description": "This watch already existed."}},
)
async def register_watch(
    body: WatchCreate, relay: RelayDep, client: CurrentClient, response: Response
) -> WatchOut:
    """Start watching a task. Registering the same task and callback again returns that watch."""
    try:
        callbacks.validate_callback_url(
            body.callback_url, allow_private=relay.settings.allow_private_callbacks
        )
    except callbacks.CallbackRefused as exc:
        raise _invalid("callback_url", str(exc)) from None
    settings = relay.settings
    if body.poll_interval is not None and body.poll_interval < settings.min_poll_interval:
        raise _invalid(
            "poll_interval",
            f"poll_interval must be at least {settings.min_poll_interval:g} seconds on this relay",
        )
    encrypted_key = None
    if body.upstream_api_key is not None:
        key_box = settings.key_box
        if key_box is None:
            raise _invalid(
                "upstream_api_key",
                "this relay cannot store upstream keys: its operator has not set "
                "RELAY_ENCRYPTION_KEY",
            )
        encrypted_key = key_box.encrypt(body.upstream_api_key)
    watch, created = await watches.register(
        relay.engine,
        client_id=client.id,
        task_id=body.task_id,
        callback_url=body.callback_url,
        metadata=body.metadata,
        expires_after=body.timeout or settings.watch_timeout,
        poll_interval=body.poll_interval,
        upstream_api_key_encrypted=encrypted_key,
    )
    if created:
        relay.poll_now()
    else:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/watches/{watch.id}"
    return WatchOut.model_validate(watch)


def _invalid(field: str, message: str) -> HTTPException:
    """Shaped like FastAPI's own validation errors, so clients handle one format."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


@router.get("")
async def list_watches(
    relay: RelayDep,
    client: CurrentClient,
    state: WatchState | None = None,
    task_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> WatchPage:
    """The client's watches, newest first."""
    if cursor is not None and not _CURSOR.match(cursor):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "cursor is not one this API returned")
    found = await watches.page(
        relay.engine,
        client_id=client.id,
        limit=limit + 1,
        before=cursor,
        state=state,
        task_id=task_id,
    )
    data = [WatchOut.model_validate(watch) for watch in found[:limit]]
    return WatchPage(data=data, next_cursor=data[-1].id if len(found) > limit else None)


@router.get("/{watch_id}", responses={404: {"description": _NOT_FOUND}})
async def get_watch(watch_id: str, relay: RelayDep, client: CurrentClient) -> WatchOut:
    watch = await watches.get(relay.engine, client_id=client.id, watch_id=watch_id)
    if watch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    return WatchOut.model_validate(watch)


@router.delete(
    "/{watch_id}",
    responses={
        404: {"description": _NOT_FOUND},
        409: {"description": "The webhook was already delivered or given up on."},
    },
)
async def cancel_watch(watch_id: str, relay: RelayDep, client: CurrentClient) -> WatchOut:
    """Stop polling; no webhook is sent after this. Cancelling twice is harmless."""
    try:
        watch = await watches.cancel(relay.engine, client_id=client.id, watch_id=watch_id)
    except watches.NotCancellable as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the watch is already {exc.state}; nothing to cancel"
        ) from None
    if watch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND)
    return WatchOut.model_validate(watch)
