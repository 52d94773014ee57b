"""Webhook signatures any Standard Webhooks library can verify."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.delivery.signing import generate_secret, signature_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE_ID = "msg_4f1c2a9e0b7d4c3a8e6f5d2c1b0a9f8e"
BODY = '{"id":"msg_4f1c2a9e0b7d4c3a8e6f5d2c1b0a9f8e","type":"task.succeeded","data":{"n":"é"}}'


def sign(body: str = BODY, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    return signature_headers(secret, message_id=MESSAGE_ID, body=body, at=at or datetime.now(UTC))


def test_a_signed_webhook_verifies_with_the_reference_library() -> None:
    headers = sign()

    assert Webhook(SECRET).verify(BODY, headers) == {
        "id": MESSAGE_ID,
        "type": "task.succeeded",
        "data": {"n": "é"},
    }
    assert Webhook(SECRET).verify(BODY.encode(), headers) is not None, "as bytes on the wire"


def test_the_headers_are_the_three_of_the_spec() -> None:
    headers = sign()

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == MESSAGE_ID
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])


@pytest.mark.parametrize(
    "tampered",
    [
        BODY.replace("succeeded", "failed"),
        BODY + " ",
        BODY.replace("é", "e"),
        "",
    ],
)
def test_a_tampered_body_does_not_verify(tampered: str) -> None:
    headers = sign()

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)


def test_another_secret_does_not_verify() -> None:
    headers = sign()

    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_another_message_id_does_not_verify() -> None:
    headers = {**sign(), "webhook-id": "msg_other"}

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_the_timestamp_is_the_attempt_time_in_whole_seconds() -> None:
    at = datetime(2026, 11, 28, 9, 30, 15, 999_999, tzinfo=UTC)

    headers = sign(at=at)

    assert headers["webhook-timestamp"] == "1795858215"
    assert datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC) == at.replace(
        microsecond=0
    )


def test_each_attempt_is_signed_afresh() -> None:
    now = datetime.now(UTC)

    first, retry = sign(at=now - timedelta(minutes=1)), sign(at=now)

    assert int(retry["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 60
    assert first["webhook-signature"] != retry["webhook-signature"]
    for headers in (first, retry):
        Webhook(SECRET).verify(BODY, headers)


def test_a_stale_attempt_is_refused_by_the_receiver() -> None:
    headers = sign(at=datetime.now(UTC) - timedelta(minutes=10))

    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(BODY, headers)


def test_an_attempt_time_in_another_zone_signs_the_same_instant() -> None:
    at = datetime.now(timezone(timedelta(hours=8)))

    Webhook(SECRET).verify(BODY, sign(at=at))


def test_a_generated_secret_is_32_random_bytes_in_standard_form() -> None:
    secrets = {generate_secret() for _ in range(50)}

    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert len(key) == 32


def test_a_generated_secret_signs_verifiable_webhooks() -> None:
    secret = generate_secret()

    headers = sign(secret=secret)

    assert Webhook(secret).verify(BODY, headers)["id"] == MESSAGE_ID


def test_with_two_secrets_a_receiver_holding_either_one_verifies() -> None:
    """While a rotated secret overlaps with the new one, each webhook carries both signatures."""
    previous = generate_secret()
    headers = signature_headers(
        [SECRET, previous], message_id=MESSAGE_ID, body=BODY, at=datetime.now(UTC)
    )

    assert re.fullmatch(r"v1,\S{44} v1,\S{44}", headers["webhook-signature"])
    assert Webhook(SECRET).verify(BODY, headers) is not None
    assert Webhook(previous).verify(BODY, headers) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
