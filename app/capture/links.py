"""The relay's own links to captured files: signed, so they can be neither guessed nor extended.

A link names a watch's file and when it stops working, and carries an HMAC-SHA256 of both under
a key the relay generated and keeps in its database, shared by every replica. Links are built on
`RELAY_PUBLIC_URL`; without it, on the address the relay was first called at, which is right
for the machine the quickstart runs on.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

#: The route that serves captured files (`api/routes/files.py`).
FILES_PATH = "/v1/files/"
#: Where links point before the relay has learned its address: uvicorn's default.
FALLBACK_ORIGIN = "http://127.0.0.1:8000"


class Verdict(enum.Enum):
    VALID = "valid"
    FORGED = "forged"
    EXPIRED = "expired"


class Origin:
    """The scheme and host that links are built on: `RELAY_PUBLIC_URL`, else the address the
    relay was first called at (`LearnOrigin`), else uvicorn's default address."""

    def __init__(self, public_url: str | None) -> None:
        self.public_url = public_url
        self.learned: str | None = None

    @property
    def value(self) -> str:
        return self.public_url or self.learned or FALLBACK_ORIGIN

    @property
    def known(self) -> bool:
        return self.public_url is not None or self.learned is not None


class FileLinks:
    def __init__(self, key: bytes, *, origin: Origin) -> None:
        self._key = key
        self._origin = origin

    def url(self, watch_id: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        query = urlencode({"expires": expires, "signature": self._sign(watch_id, expires)})
        return f"{self._origin.value}{FILES_PATH}{watch_id}?{query}"

    def verify(self, watch_id: str, expires: int, signature: str) -> Verdict:
        """Forgery is judged first: an expired link is only said to be expired if it is real."""
        if not signature.isascii() or not hmac.compare_digest(
            self._sign(watch_id, expires), signature
        ):
            return Verdict.FORGED
        if expires <= datetime.now(UTC).timestamp():
            return Verdict.EXPIRED
        return Verdict.VALID

    def _sign(self, watch_id: str, expires: int) -> str:
        message = f"{FILES_PATH}{watch_id}\n{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class LearnOrigin:
    """ASGI middleware recording the scheme and `Host` of the first request the relay serves:
    the address its first client reached it at, and so one that works on that machine."""

    def __init__(self, app: ASGIApp, origin: Origin) -> None:
        self.app = app
        self.origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.origin.known:
            host = dict(scope["headers"]).get(b"host")
            if host:
                self.origin.learned = f"{scope['scheme']}://{host.decode('latin-1')}"
        await self.app(scope, receive, send)
