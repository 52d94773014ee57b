"""What route handlers receive, as `Annotated` aliases to keep their signatures short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.relay import Relay
from app.store import clients

_bearer = HTTPBearer(auto_error=False, description="The client app's API key.")


async def _relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


RelayDep = Annotated[Relay, Depends(_relay)]


async def _client(
    relay: RelayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> clients.Client:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    client = await relay.clients.find(credentials.credentials)
    if client is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return client


CurrentClient = Annotated[clients.Client, Depends(_client)]
