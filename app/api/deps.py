"""What route handlers receive, as `Annotated` aliases to keep their signatures short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPBearer

from app.relay import Relay
from app.store import client_apps


async def _relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


RelayDep = Annotated[Relay, Depends(_relay)]


class _ApiKey(HTTPBearer):
    """The client app whose API key the request bears.

    One dependency that both reads the header and looks the key up, rather than a lookup that
    depends on `HTTPBearer`: every request is authenticated, and FastAPI's solving of a
    sub-dependency is a noticeable part of what a registration costs the event loop.
    """

    async def __call__(self, request: Request) -> client_apps.Client:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        relay = await _relay(request)
        client = await relay.clients.authenticate(credentials.credentials)
        if client is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return client


_api_key = _ApiKey(
    auto_error=False, scheme_name="HTTPBearer", description="The client app's API key."
)

CurrentClient = Annotated[client_apps.Client, Depends(_api_key)]
