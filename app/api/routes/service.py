"""Health, readiness, metrics and the client's own details."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from app.api import errors
from app.api.deps import CurrentClient, RelayDep
from app.api.schemas import ClientOut, Health
from app.store.database import ping

router = APIRouter()


@router.get("/healthz", tags=["service"])
async def healthz() -> Health:
    """The process is up (liveness)."""
    return Health(status="ok")


@router.get("/readyz", tags=["service"], responses={503: errors.error("Database unreachable.")})
async def readyz(relay: RelayDep) -> Health:
    """The database answers (readiness)."""
    try:
        await ping(relay.db)
    except (SQLAlchemyError, OSError):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unreachable") from None
    return Health(status="ok")


@router.get("/metrics", tags=["service"], response_class=Response)
async def metrics(relay: RelayDep) -> Response:
    """Prometheus metrics."""
    await relay.metrics.read_work_in_progress(relay.db, max_age=relay.settings.metrics_refresh)
    return Response(generate_latest(relay.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/client",
    tags=["client"],
    responses={**errors.UNAUTHORIZED, **errors.SECRETS_UNREADABLE},
)
async def current_client(relay: RelayDep, client: CurrentClient) -> ClientOut:
    """The calling client app, with the secret its webhooks are signed with."""
    secret = await relay.clients.signing_secret(client.id)
    app = await relay.clients.get(client.id)
    return ClientOut(
        id=client.id,
        name=client.name,
        signing_secret=secret,
        previous_secret_until=app.previous_secret_until,
    )
