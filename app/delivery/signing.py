"""Standard Webhooks signatures, so receivers can verify with any of the spec's libraries."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks import Webhook


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@lru_cache(maxsize=1024)
def _webhook(secret: str) -> Webhook:
    """Decoding a secret is per client, not per delivery."""
    return Webhook(secret)


def signature_headers(
    secret: str | Sequence[str], *, message_id: str, body: str, at: datetime
) -> dict[str, str]:
    """The three headers of the spec; the timestamp is the attempt's, so each retry is fresh.

    With several secrets (the new and the previous one, while a rotation's overlap lasts),
    `webhook-signature` carries one signature for each, separated by spaces, as the spec allows:
    a receiver accepts the webhook if any of them verifies with its secret.
    """
    at = at.astimezone(UTC)  # the library reads the wall time as UTC, whatever the zone
    keys = (secret,) if isinstance(secret, str) else secret
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(_webhook(key).sign(message_id, at, body) for key in keys),
    }
