"""`/v1/recover`: after an outage of the receiver, send again what was given up on."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import errors
from app.api.deps import CurrentClient, RelayDep
from app.api.schemas import RecoverRequest, RecoverResult
from app.store import watch_queries

router = APIRouter(tags=["watches"], responses=errors.UNAUTHORIZED)


@router.post("/v1/recover", responses=errors.UNREADABLE_BODY)
async def recover(body: RecoverRequest, relay: RelayDep, client: CurrentClient) -> RecoverResult:
    """Queue again every event given up on (dead-lettered) that was created since `since`."""
    recovered = await watch_queries.recover(relay.db, client_id=client.id, since=body.since)
    if recovered:
        relay.deliver_now()
    return RecoverResult(recovered=recovered)
