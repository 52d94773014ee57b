"""Keeping secrets out of log lines: every line is searched and masked before it is written.

A secret can reach a line by many roads (an exception's message, a URL, the repr of a request or
its headers), so it is not enough for the code that logs to leave secrets out: the written line
itself is searched, in one pass, for the forms secrets take and for the values this relay was
configured with. Masks never take a backslash or a quote, so a JSON line stays JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from app.settings import Settings

MASK = "[redacted]"

#: The forms secrets take, wherever they appear, each with a marker (lower case) that a line
#: must hold for the form to be looked for: most lines hold none, and cost no regex at all. What
#: the group `kept` matched stays, so a reader still sees what kind of thing was there; what a
#: mask already covers is left alone.
_FORMS = tuple(
    (marker, re.compile(pattern.replace("{fresh}", r"(?!\[redacted\])")))
    for marker, pattern in (
        # Credentials in headers and their reprs, whatever they hold: `Authorization: Bearer …`.
        (
            "authorization",
            r"(?P<kept>(?i:authorization)\\?[\"']?\s*[:=]\s*\\?[\"']?)"
            r"(?>(?:(?i:bearer|basic)\s+)?){fresh}[^\s\"'\\,;}\]]+",
        ),
        ("bearer", r"(?P<kept>\b(?i:bearer)\s+){fresh}[^\s\"'\\,;}\]]+"),
        # Client apps' API keys and signing secrets; upstream keys as the upstream hands them out.
        ("rk_", r"(?P<kept>\brk_)[A-Za-z0-9_\-]{6,}"),
        ("whsec_", r"(?P<kept>\bwhsec_)[A-Za-z0-9+/=]{6,}"),
        ("sk-", r"(?P<kept>\bsk-)[A-Za-z0-9_\-]{6,}"),
        # The signature of a signed file link opens the file to whoever holds the link.
        ("signature=", r"(?P<kept>[?&](?i:signature)=){fresh}[^&\s\"'\\#]+"),
        # A password in a URL (a database URL in an error, say).
        ("://", r"(?P<kept>\b[a-z][a-z0-9+.\-]*://[^:/?#\s@\"'\\]*:){fresh}[^@/?#\s\"'\\]+(?=@)"),
    )
)
#: Configured values shorter than this are not searched for: they would mask ordinary words.
_SHORTEST = 4
#: Stands in for the one value meant to be seen while the rest is masked (private use).
_SHOWN = "\ue000"


class Redactor:
    """Masks the forms of secrets, and the given secret values, in text.

    :param secrets: values to mask wherever they appear, also as JSON or repr escapes them.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        spellings = {
            spelling
            for secret in secrets
            if len(secret) >= _SHORTEST
            for spelling in (secret, json.dumps(secret)[1:-1], repr(secret)[1:-1])
        }
        # Longest first, so that a secret holding another is masked whole.
        self._values = sorted(spellings, key=len, reverse=True)

    def __call__(self, text: str, *, shown: str | None = None) -> str:
        """:param shown: one value meant to be seen, kept as it is (the API key generated at
        the first start is shown once: it is the only way to learn it)."""
        if shown:
            text = text.replace(shown, _SHOWN)
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        lowered = text.lower()
        for marker, form in _FORMS:
            if marker in lowered:
                text = form.sub(_mask, text)
        return text.replace(_SHOWN, shown) if shown else text


def _mask(found: re.Match[str]) -> str:
    return found.group("kept") + MASK


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the configuration holds: keys, tokens, the database's password."""
    values = [
        secret.get_secret_value()
        for secret in (
            settings.nebula_api_key,
            settings.api_key,
            settings.signing_secret,
            settings.admin_token,
            settings.s3_secret_access_key,
        )
        if secret is not None
    ]
    if settings.signing_secret is not None:
        values.append(settings.signing_secret.get_secret_value().removeprefix("whsec_"))
    if settings.encryption_key is not None:
        values += [key.strip() for key in settings.encryption_key.get_secret_value().split(",")]
    # Read without SQLAlchemy's URL parser, which the capture process (it logs, and opens no
    # database) would otherwise import for this alone.
    try:
        password = urlsplit(settings.database_url).password
    except ValueError:
        password = None
    if password:
        values += [password, unquote(password)]
    return values
