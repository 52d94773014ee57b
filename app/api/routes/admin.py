"""`/v1/admin/clients`: the operator manages client apps (the same as `python -m app clients`).

Guarded by `RELAY_ADMIN_TOKEN`. A relay without one has no admin API at all: every path under
`/v1/admin` answers `404`, whatever the method, body or credentials, as if it did not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import errors
from app.api.deps import RelayDep
from app.api.schemas import ClientAppCreate, ClientAppCredentials, ClientAppOut, ClientAppPage
from app.relay import Relay
from app.store import client_apps

log = logging.getLogger(__name__)

PREFIX = "/v1/admin"
_NOT_FOUND = "no client app with this id"
_REVOKED = "the client app was revoked: it gets no new key or secret"


class _AdminToken(HTTPBearer):
    """Lets the request through if it bears the admin token: `401` without a token, `403`
    with another one (a client app's key, say), `404` on a relay without an admin token."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        relay: Relay = request.app.state.relay
        configured = relay.settings.admin_token
        if configured is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        credentials = await super().__call__(request)
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing admin token: send 'Authorization: Bearer <RELAY_ADMIN_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not relay.settings.is_admin_token(credentials.credentials):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this is not the admin token")


_admin = _AdminToken(
    auto_error=False, scheme_name="AdminToken", description="The relay's RELAY_ADMIN_TOKEN."
)

router = APIRouter(
    prefix=f"{PREFIX}/clients",
    tags=["admin"],
    dependencies=[Depends(_admin)],
    responses={
        401: errors.error("No admin token."),
        403: errors.error("A token that is not RELAY_ADMIN_TOKEN."),
        404: errors.error("A relay without RELAY_ADMIN_TOKEN has no admin API."),
    },
)


class Hidden:
    """Answers `404` to every request under `/v1/admin`, before routing: without it, a wrong
    method would get `405` and a malformed body `422`, telling that the admin API is there.
    Installed only on a relay without an admin token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(f"{PREFIX}/"):
            body = b'{"detail":"Not Found"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@router.get("")
async def list_clients(relay: RelayDep) -> ClientAppPage:
    """Every client app, the oldest first, revoked ones included."""
    return ClientAppPage(data=[_out(app) for app in await relay.clients.all()])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: errors.error("Another client app has this name."), **errors.UNREADABLE_BODY},
)
async def create_client(body: ClientAppCreate, relay: RelayDep) -> ClientAppCredentials:
    """A new client app, with its API key and signing secret: shown only in this answer."""
    try:
        made = await relay.clients.create(body.name)
    except client_apps.InvalidNameError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", "name"], "msg": str(exc), "type": "value_error"}],
        ) from None
    except client_apps.NameTakenError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    log.info(
        "client app created",
        extra={"client_id": made.client.id, "client_name": made.client.name},
    )
    return _credentials(made)


@router.get("/{client_id}", responses={404: errors.error(_NOT_FOUND)})
async def get_client(client_id: str, relay: RelayDep) -> ClientAppOut:
    with _answering_for_the_app():
        return _out(await relay.clients.get(client_id))


@router.post(
    "/{client_id}/rotate-key",
    responses={404: errors.error(_NOT_FOUND), 409: errors.error(_REVOKED)},
)
async def rotate_key(client_id: str, relay: RelayDep) -> ClientAppCredentials:
    """A new API key for the app, shown only in this answer; the one it had is refused from
    now on, on every replica."""
    with _answering_for_the_app():
        made = await relay.clients.rotate_key(client_id)
    log.info("client app's API key rotated", extra={"client_id": client_id})
    return _credentials(made)


@router.post(
    "/{client_id}/rotate-secret",
    responses={404: errors.error(_NOT_FOUND), 409: errors.error(_REVOKED)},
)
async def rotate_secret(client_id: str, relay: RelayDep) -> ClientAppCredentials:
    """A new signing secret for the app. Until `previous_secret_until` (`RELAY_SECRET_OVERLAP`
    from now) webhooks carry signatures made with both the new and the previous secret, then
    with the new one only."""
    with _answering_for_the_app():
        made = await relay.clients.rotate_secret(client_id)
    log.info("client app's signing secret rotated", extra={"client_id": client_id})
    return _credentials(made)


@router.post("/{client_id}/revoke", responses={404: errors.error(_NOT_FOUND)})
async def revoke_client(client_id: str, relay: RelayDep) -> ClientAppOut:
    """Refuse the app's API key from now on, on every replica (revoking twice is harmless).
    Its watches run to their end and still get their webhooks."""
    with _answering_for_the_app():
        app = await relay.clients.revoke(client_id)
    log.info("client app revoked", extra={"client_id": client_id})
    return _out(app)


@contextmanager
def _answering_for_the_app() -> Iterator[None]:
    """The store's refusals about one app, as the HTTP answers the routes document."""
    try:
        yield
    except client_apps.ClientNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _NOT_FOUND) from None
    except client_apps.ClientRevokedError:
        raise HTTPException(status.HTTP_409_CONFLICT, _REVOKED) from None


def _out(app: client_apps.ClientApp) -> ClientAppOut:
    return ClientAppOut(
        id=app.id,
        name=app.name,
        created_at=app.created_at,
        revoked_at=app.revoked_at,
        previous_secret_until=app.previous_secret_until,
    )


def _credentials(made: client_apps.Credentials) -> ClientAppCredentials:
    return ClientAppCredentials(
        client=_out(made.client), api_key=made.api_key, signing_secret=made.signing_secret
    )
