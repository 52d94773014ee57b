"""Counting every answer to `POST /v1/watches` by outcome (`relay_registrations_total`).

The route knows why it answered as it did and says so (`note`); a request refused before the
route ran (no API key, a body too large, unreadable or invalid) is counted by its status here,
and one that failed is counted as an error. Each answer is counted once, whichever said it.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Registration

PATH = "/v1/watches"
_NOTED = "registration_outcome"
#: Refusals made before the route runs, by status: their reasons.
_REFUSED_BEFORE_THE_ROUTE = {
    400: "unreadable_body",
    401: "unauthorized",
    413: "too_large",
    422: "invalid_body",
}


def note(request: Request, outcome: Registration, reason: str = "") -> None:
    """Say how the registration went, for the count made once it is answered."""
    setattr(request.state, _NOTED, (outcome, reason))


class CountRegistrations:
    """ASGI middleware; it looks at registrations only, and counts them once the relay runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].removeprefix(scope.get("root_path", "")) != PATH
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answered)
        finally:
            relay = getattr(scope["app"].state, "relay", None)
            if relay is not None:
                outcome, reason = _outcome(status, scope.get("state", {}).get(_NOTED))
                relay.metrics.registrations.labels(outcome=outcome, reason=reason).inc()


def _outcome(status: int, noted: tuple[Registration, str] | None) -> tuple[Registration, str]:
    if status >= 500:
        return Registration.ERROR, ""
    if noted is not None:
        return noted
    return Registration.REFUSED, _REFUSED_BEFORE_THE_ROUTE.get(status, f"http_{status}")
