"""Who is signed in to the console, checked on every request, and what route handlers receive.

A session names the credential it was opened with, never the credential itself: the digest of a
client app's API key (looked up as the API looks keys up, so a key rotated away or revoked ends
the session at once), or a fingerprint of the admin token (so a changed token ends the admin's
sessions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request

from app.console import session
from app.relay import Relay

ADMIN_NAME = "admin"
#: A console form has a handful of fields; anything much larger is not one of ours.
MAX_FORM_BYTES = 16 * 1024


class ConsoleError(Exception):
    """Answered with the console's error page: a status and a sentence saying what to do."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class SignInNeeded(Exception):
    """No session, or one that has ended: the browser is sent to the sign-in page."""


@dataclass(frozen=True, slots=True)
class Operator:
    """The one signed in: a client app, or the admin (every app)."""

    session: session.Session
    name: str
    #: The CSRF token of this session's forms.
    csrf: str

    @property
    def client_id(self) -> str | None:
        return self.session.client_id

    @property
    def is_admin(self) -> bool:
        return self.session.client_id is None


@lru_cache(maxsize=16)
def sessions_of(key: bytes, ttl: float) -> session.Sessions:
    """One signer per relay, not one per request."""
    return session.Sessions(key, ttl=ttl)


def relay_of(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


def sessions(request: Request) -> session.Sessions:
    relay = relay_of(request)
    return sessions_of(relay.console_key, relay.settings.console_session_ttl)


def session_of(request: Request) -> session.Session | None:
    """The session the request's cookie carries, if its signature, its age and (for the admin)
    the token it was opened with are still good. A client app's key is not checked here: that
    takes the database (`signed_in`, or a query that checks it along the way)."""
    signer = sessions(request)
    found = signer.read(request.cookies.get(session.COOKIE))
    if found is None or found.client_id is not None:
        return found
    token = relay_of(request).settings.admin_token
    if token is None or not session.same(
        signer.admin_fingerprint(token.get_secret_value()), found.credential
    ):
        return None
    return found


async def signed_in(request: Request) -> Operator | None:
    """The operator whose session cookie the request carries, if it is still good."""
    signer = sessions(request)
    found = session_of(request)
    if found is None:
        return None
    if found.client_id is None:
        return Operator(found, ADMIN_NAME, signer.csrf_token(found))
    client = await relay_of(request).clients.holder_of(found.credential)
    if client is None or client.id != found.client_id:
        return None
    return Operator(found, client.name, signer.csrf_token(found))


async def _operator(request: Request) -> Operator:
    found = await signed_in(request)
    if found is None:
        raise SignInNeeded
    return found


CurrentOperator = Annotated[Operator, Depends(_operator)]
ConsoleRelay = Annotated[Relay, Depends(relay_of)]


async def form_of(request: Request) -> dict[str, str]:
    """The fields of a submitted console form (`application/x-www-form-urlencoded`), the first
    value of each. Read here rather than by FastAPI, whose form support needs a package of its
    own, and whose refusals are JSON, not pages."""
    body = await _form_body(request)
    if not body:
        return {}
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ConsoleError(415, "Send the form from the console's page.")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise ConsoleError(
            400, "The form could not be read; send it again from its page."
        ) from None
    return {name: values[0] for name, values in fields.items()}


async def _form_body(request: Request) -> bytes:
    """The body, read no further than a console form can go: a larger one is refused with the
    console's page, before the relay's own cap on bodies (far larger) would answer in JSON."""
    too_large = ConsoleError(413, "This form is far larger than any of the console's.")
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > MAX_FORM_BYTES:
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise too_large
    return body


async def _checked_form(request: Request, operator: CurrentOperator) -> dict[str, str]:
    """The form, once it has shown this session's CSRF token (as a field, or as the header
    htmx sends)."""
    fields = await form_of(request)
    given = fields.get(session.CSRF_FIELD) or request.headers.get(session.CSRF_HEADER)
    if not session.same(operator.csrf, given):
        raise ConsoleError(
            403,
            "This form was refused: it does not carry this session's security token, so it may "
            "not have been sent from the console. Reload the page and try again.",
        )
    return fields


CheckedForm = Annotated[dict[str, str], Depends(_checked_form)]
