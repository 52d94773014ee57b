"""Proof that a callback belongs to whoever registers it (`"verify_callback": true`).

The relay POSTs a signed `webhook.verify` event carrying a random challenge to the callback,
and takes the registration only if the receiver answers 2xx with the challenge: a URL that
merely accepts POSTs (or belongs to someone else) cannot be made the target of webhooks. The
challenge travels like a webhook, over the same transport, so it cannot reach anything a webhook
could not; its answer is awaited for a few seconds only, since a registration waits for it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Final

import httpx

from app.delivery.bodies import WebhookVerifyEvent
from app.delivery.callbacks import CallbackRefused
from app.delivery.signing import signature_headers
from app.transport import USER_AGENT, parsed_url, timeout_extension

VERIFY_EVENT: Final = "webhook.verify"
#: The longest a registration waits for the receiver's answer, in seconds.
CHALLENGE_TIMEOUT = 5.0
#: How much of the answer is read: an echoed challenge is well under 100 bytes.
ANSWER_BYTES = 1024
#: How much of a wrong answer is quoted back in the refusal.
QUOTED_CHARS = 200


class OwnershipNotConfirmed(ValueError):
    """The callback did not answer the challenge as asked; the message says what happened."""


class Challenger:
    """Sends ownership challenges for the registrar.

    :param signing_secrets: the client app's signing secrets (two during a rotation's
        overlap), by client id, so the challenge is signed as that app's webhooks are.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        signing_secrets: Callable[[str], Awaitable[Sequence[str]]],
        timeout: float = CHALLENGE_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._signing_secrets = signing_secrets
        self._extensions = timeout_extension(timeout)
        self._timeout = timeout

    async def confirm(self, *, client_id: str, callback_url: str) -> None:
        """Return once the callback echoed a fresh challenge.

        :raises OwnershipNotConfirmed: it did not, could not be reached, or is refused.
        """
        challenge = secrets.token_urlsafe(32)
        message_id = f"msg_verify_{secrets.token_hex(12)}"
        at = datetime.now(UTC)
        event: WebhookVerifyEvent = {
            "id": message_id,
            "type": VERIFY_EVENT,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": {"challenge": challenge, "callback_url": callback_url},
        }
        body = json.dumps(event, separators=(",", ":"))
        keys = await self._signing_secrets(client_id)
        request = httpx.Request(
            "POST",
            parsed_url(callback_url),
            content=body.encode(),
            headers={
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signature_headers(keys, message_id=message_id, body=body, at=at),
            },
            extensions=self._extensions,
        )
        sent = f"a signed {VERIFY_EVENT} event with data.challenge {challenge!r}"
        try:
            response = await self._transport.handle_async_request(request)
            try:
                answer = await _read_answer(response)
            finally:
                await response.aclose()
        except CallbackRefused as exc:
            raise OwnershipNotConfirmed(f"callback_url is refused: {exc}") from None
        except httpx.TimeoutException:
            raise OwnershipNotConfirmed(
                f"callback_url did not answer the ownership challenge ({sent}) within "
                f"{self._timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise OwnershipNotConfirmed(
                f"callback_url could not be reached for the ownership challenge: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if 200 <= response.status_code < 300 and _echoes(answer, challenge):
            return
        raise OwnershipNotConfirmed(
            f"callback_url did not confirm it is yours: the relay POSTed {sent} and expected a "
            '2xx answer whose body is {"challenge": "<the challenge>"} or the bare challenge; '
            f"it answered HTTP {response.status_code} with {_quoted(answer)}"
        )


async def _read_answer(response: httpx.Response) -> bytes:
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= ANSWER_BYTES:
            break
    return received[:ANSWER_BYTES]


def _echoes(answer: bytes, challenge: str) -> bool:
    text = answer.decode("utf-8", errors="replace").strip()
    if text == challenge:
        return True
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("challenge") == challenge


def _quoted(answer: bytes) -> str:
    if not answer.strip():
        return "an empty body"
    text = answer.decode("utf-8", errors="replace")
    return repr(text[:QUOTED_CHARS] + ("…" if len(text) > QUOTED_CHARS else ""))
