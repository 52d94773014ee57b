"""Upstream keys at rest: encrypted with keys from configuration, rotatable."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from app.encryption import KeyBox, UndecryptableError

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_a_key_comes_back_as_it_went_in_and_is_not_stored_readable() -> None:
    box = KeyBox.from_config(NEW)

    token = box.encrypt("sk-secret-upstream-key")

    assert "sk-secret-upstream-key" not in token
    assert box.decrypt(token) == "sk-secret-upstream-key"


def test_after_rotation_old_values_still_decrypt_and_new_ones_use_the_first_key() -> None:
    stored = KeyBox.from_config(OLD).encrypt("sk-a")
    rotated = KeyBox.from_config(f"{NEW}, {OLD}")

    assert rotated.decrypt(stored) == "sk-a"
    assert KeyBox.from_config(NEW).decrypt(rotated.encrypt("sk-b")) == "sk-b"


def test_a_value_from_a_key_no_longer_configured_is_reported_not_garbled() -> None:
    stored = KeyBox.from_config(OLD).encrypt("sk-a")

    with pytest.raises(UndecryptableError, match="RELAY_ENCRYPTION_KEY"):
        KeyBox.from_config(NEW).decrypt(stored)


@pytest.mark.parametrize(
    "config",
    ["", " , ", "not-a-fernet-key", f"{NEW},short"],
    ids=["empty", "commas", "not-a-key", "one-good-one-short"],
)
def test_a_malformed_configuration_is_refused_with_how_to_make_a_key(config: str) -> None:
    with pytest.raises(ValueError, match="RELAY_ENCRYPTION_KEY"):
        KeyBox.from_config(config)
