"""The console's session: a signed cookie saying who signed in, and the CSRF tokens of its forms.

Nothing is kept on the server. The cookie is signed with a key the relay keeps in its database
(`relay_secrets`), so every replica accepts it, and it carries its own expiry. It names the
credential signed in with (the digest of a client app's API key, or a fingerprint of the admin
token), which is checked again on every request: a key rotated away or revoked, or a changed
admin token, ends the session at once.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "relay_console"
#: Before sign-in there is no session to tie the form's token to: this cookie holds a nonce
#: that the sign-in form's token is made from (a signed double submit).
SIGN_IN_COOKIE = "relay_console_sign_in"
PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
#: What `new_nonce` makes (`secrets.token_urlsafe(16)`), with room for a longer one.
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: How long a sign-in form stays valid.
SIGN_IN_TTL = 3600


@dataclass(frozen=True, slots=True)
class Session:
    #: The client app signed in; None for the admin, who sees every app.
    client_id: str | None
    #: The digest of the app's API key, or the admin token's fingerprint.
    credential: str
    #: Random, made at sign-in: what the CSRF token is made from.
    id: str


class Sessions:
    """:param key: the relay's console key (`Relay.console_key`).
    :param ttl: seconds a session lasts.
    """

    def __init__(self, key: bytes, *, ttl: float) -> None:
        self._key = key
        self._serializer = URLSafeTimedSerializer(key, salt="relay-console-session")
        self.ttl = ttl

    def open(self, *, client_id: str | None, credential: str) -> tuple[Session, str]:
        """A new session, and the cookie value that carries it; every sign-in gets a new id."""
        session = Session(client_id, credential, secrets.token_urlsafe(16))
        value = self._serializer.dumps(
            {"client": session.client_id, "credential": session.credential, "id": session.id}
        )
        return session, value

    def read(self, value: str | None) -> Session | None:
        """The session the cookie carries; None if there is none, or it was altered or expired."""
        if not value:
            return None
        try:
            fields: Any = self._serializer.loads(value, max_age=math.ceil(self.ttl))
        except BadSignature:  # SignatureExpired included
            return None
        match fields:
            case {"client": str() | None as client, "credential": str(credential), "id": str(id_)}:
                return Session(client, credential, id_)
        return None

    def csrf_token(self, session: Session) -> str:
        return self._mac(b"csrf", session.id)

    def sign_in_token(self, nonce: str) -> str:
        return self._mac(b"sign-in", nonce)

    def admin_fingerprint(self, admin_token: str) -> str:
        """Stands for the admin token in the cookie, which must never hold the token itself."""
        return self._mac(b"admin", admin_token)

    def set_cookie(self, response: Response, request: Request, value: str) -> None:
        _set(response, request, COOKIE, value, max_age=math.ceil(self.ttl))

    def _mac(self, purpose: bytes, value: str) -> str:
        return hmac.new(self._key, purpose + b"\0" + value.encode(), hashlib.sha256).hexdigest()


def same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def is_nonce(value: str) -> bool:
    """Whether `value` could be one `new_nonce` made."""
    return _NONCE.fullmatch(value) is not None


def set_sign_in_cookie(response: Response, request: Request, nonce: str) -> None:
    _set(response, request, SIGN_IN_COOKIE, nonce, max_age=SIGN_IN_TTL)


def clear(response: Response, request: Request) -> None:
    for name in (COOKIE, SIGN_IN_COOKIE):
        response.delete_cookie(
            name, path=PATH, httponly=True, samesite="strict", secure=_secure(request)
        )


def _set(response: Response, request: Request, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _secure(request: Request) -> bool:
    """Over https the cookie is never sent in clear; over plain http (a relay on loopback, or
    behind a proxy that does not say so) a `Secure` cookie would not be sent back at all."""
    return request.url.scheme == "https"
