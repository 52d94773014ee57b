"""Standard Webhooks signatures, so receivers can verify with any of the spec's libraries."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks import Webhook


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@lru_cache(maxsize=1024)
def _webhook(secret: str) -> Webhook:
    """Decoding a secret is per client, not per delivery."""
    return Webhook(secret)


def signature_headers(secret: str, *, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """The three headers of the spec; the timestamp is the attempt's, so each retry is fresh."""
    at = at.astimezone(UTC)  # the library reads the wall time as UTC, whatever the zone
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": _webhook(secret).sign(message_id, at, body),
    }
