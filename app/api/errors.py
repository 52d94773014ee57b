"""How the API refuses: the error answers its routes document, and validation errors made safe to
send back whatever the client sent."""

from __future__ import annotations

import math
import re
from typing import Any

from app.api.schemas import MAX_BODY_BYTES, ErrorOut

#: `responses=` entries of the routes, merged as each route needs them.
Responses = dict[int | str, dict[str, Any]]

UNAUTHORIZED: Responses = {
    401: {"model": ErrorOut, "description": "No API key, or one this relay does not know."},
}
UNREADABLE_BODY: Responses = {
    400: {
        "model": ErrorOut,
        "description": "The body could not be parsed: not UTF-8, or JSON nested or with numbers "
        "longer than the parser takes.",
    },
    413: {"model": ErrorOut, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
}


#: The relay runs without the key its secrets were stored with (`main._secrets_unreadable`).
SECRETS_UNREADABLE: Responses = {
    503: {
        "model": ErrorOut,
        "description": "The relay cannot read the secrets it stored: RELAY_ENCRYPTION_KEY is not "
        "the key they were stored with. The same request succeeds once it is.",
    }
}


def error(description: str) -> dict[str, Any]:
    """One documented refusal, answered as `{"detail": "..."}`."""
    return {"model": ErrorOut, "description": description}


#: Levels of a refused value echoed back in a validation error; deeper ones are elided.
ECHO_DEPTH = 40
_SURROGATE = re.compile("[\ud800-\udfff]")


def sendable(value: Any, depth: int = 0) -> Any:
    """`value`, a validation error or part of one, as JSON can carry it.

    An error echoes what was refused, and that may be what JSON cannot hold: a lone surrogate
    (from a `"\\ud800"` escape), NaN or Infinity (which Python's parser takes), bytes that are not
    UTF-8 (a body sent as another media type), or nesting deeper than the encoder goes. Answering
    with such a value raised while the answer was being encoded: a 500 instead of the 422.
    """
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict | list | tuple):
        if depth >= ECHO_DEPTH:
            return "…"
        if isinstance(value, dict):
            return {sendable(k, depth + 1): sendable(v, depth + 1) for k, v in value.items()}
        return [sendable(item, depth + 1) for item in value]
    return value
