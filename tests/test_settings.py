"""The relay's configuration: the README's table of options, read from the environment."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, ValidationError

from app.delivery.signing import generate_secret
from app.settings import DEFAULT_RETRY_SCHEDULE, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets is seen: no option of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(("RELAY_", "NEBULA_")):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    """Settings from the environment and `values` only, never from a stray `.env`."""
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("field", "default"),
    [
        ("nebula_base_url", "https://llm.ai-nebula.com"),
        ("nebula_api_key", None),
        ("database_url", "sqlite:///./relay.db"),
        ("sqlite_synchronous", "normal"),
        ("api_key", None),
        ("signing_secret", None),
        ("poll_interval", 5.0),
        ("retry_schedule", (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)),
        ("retry_jitter", 0.2),
        ("delivery_timeout", 15.0),
        ("upstream_timeout", 10.0),
        ("allow_private_callbacks", False),
        ("require_https", False),
        ("callback_allowlist", ()),
        ("tick_interval", 0.5),
        ("poll_concurrency", 1000),
        ("http_processes", 0),
        ("delivery_concurrency", 100),
        ("shutdown_grace", 10.0),
        ("simulator", False),
        ("watch_timeout", 86400.0),
        ("min_poll_interval", 1.0),
        ("not_found_grace", 60.0),
        ("upstream_rps", 0.0),
        ("upstream_backoff_max", 300.0),
        ("circuit_cooldown", 30.0),
        ("encryption_key", None),
        ("admin_token", None),
        ("secret_overlap", 86400.0),
        ("retention", 2_592_000.0),
        ("max_active_watches", 100_000),
        ("rate_limit", 0.0),
        ("metrics_refresh", 15.0),
        ("capture_process", True),
        ("capture_slots", 16),
        ("capture_request_timeout", 600.0),
    ],
)
def test_every_option_defaults_to_the_value_in_the_readme(field: str, default: object) -> None:
    assert getattr(settings(), field) == default


def test_every_option_has_a_row_in_the_readmes_configuration_table() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, re.MULTILINE))
    names = {
        field.validation_alias.choices[0]
        if isinstance(field.validation_alias, AliasChoices)
        else f"RELAY_{name.upper()}"
        for name, field in Settings.model_fields.items()
    }

    assert names - rows == set()


def test_the_default_schedule_makes_eight_attempts_over_about_a_day() -> None:
    assert settings().retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert len(DEFAULT_RETRY_SCHEDULE) + 1 == 8
    assert 24 * 3600 < sum(DEFAULT_RETRY_SCHEDULE) < 28 * 3600


def test_options_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBULA_API_KEY", "sk-from-env")
    monkeypatch.setenv("NEBULA_BASE_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("RELAY_RETRY_SCHEDULE", "1, 2,3")
    monkeypatch.setenv("RELAY_POLL_INTERVAL", "2.5")
    monkeypatch.setenv("RELAY_ALLOW_PRIVATE_CALLBACKS", "true")
    monkeypatch.setenv("RELAY_DELIVERY_CONCURRENCY", "7")

    loaded = settings()

    assert loaded.nebula_api_key is not None
    assert loaded.nebula_api_key.get_secret_value() == "sk-from-env"
    assert loaded.nebula_base_url == "http://127.0.0.1:9000"
    assert loaded.retry_schedule == (1.0, 2.0, 3.0)
    assert loaded.poll_interval == 2.5
    assert loaded.allow_private_callbacks is True
    assert loaded.delivery_concurrency == 7


def test_environment_names_are_not_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("relay_poll_interval", "3")

    assert settings().poll_interval == 3.0


def test_http_processes_are_still_read_from_their_former_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_POLL_PROCESSES", "2")
    assert settings().http_processes == 2

    monkeypatch.setenv("RELAY_HTTP_PROCESSES", "3")
    assert settings().http_processes == 3


def test_a_dotenv_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("NEBULA_API_KEY=sk-from-file\nRELAY_POLL_INTERVAL=4\n")
    monkeypatch.setenv("RELAY_POLL_INTERVAL", "3")

    loaded = Settings(_env_file=env_file)

    assert loaded.nebula_api_key is not None
    assert loaded.nebula_api_key.get_secret_value() == "sk-from-file"
    assert loaded.poll_interval == 3.0


def test_the_callback_allowlist_is_read_as_comma_separated_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_CALLBACK_ALLOWLIST", " hooks.internal, 10.0.0.0/8 ,,fd00::/8")
    monkeypatch.setenv("RELAY_REQUIRE_HTTPS", "true")

    loaded = settings()

    assert loaded.callback_allowlist == ("hooks.internal", "10.0.0.0/8", "fd00::/8")
    assert loaded.require_https is True


@pytest.mark.parametrize("entry", ["https://hooks.internal", "10.0.0.0/40", "hooks internal"])
def test_a_mistyped_allowlist_entry_fails_the_start(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setenv("RELAY_CALLBACK_ALLOWLIST", f"hooks.internal,{entry}")

    with pytest.raises(ValidationError, match="RELAY_CALLBACK_ALLOWLIST"):
        settings()


def test_a_schedule_may_be_given_as_a_list_from_code() -> None:
    assert settings(retry_schedule=[0.1, 2]).retry_schedule == (0.1, 2.0)


def test_secrets_never_show_in_the_settings_repr() -> None:
    secret = generate_secret()

    loaded = settings(nebula_api_key="sk-hidden", api_key="relay-hidden", signing_secret=secret)

    for text in (repr(loaded), str(loaded)):
        assert "sk-hidden" not in text
        assert "relay-hidden" not in text
        assert secret not in text


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # 24 bytes, the minimum
        generate_secret(),
    ],
    ids=["minimum", "generated"],
)
def test_a_well_formed_signing_secret_is_accepted(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_SIGNING_SECRET", secret)

    loaded = settings()

    assert loaded.signing_secret is not None
    assert loaded.signing_secret.get_secret_value() == secret


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RELAY_RETRY_SCHEDULE", "5,soon", "comma-separated seconds, e.g. 5,300,1800"),
        ("RELAY_RETRY_SCHEDULE", "5;300", "comma-separated seconds"),
        ("RELAY_RETRY_SCHEDULE", "5,-1,30", "retry delays must be between 0 and 2592000 seconds"),
        ("RELAY_RETRY_SCHEDULE", "5,1e12", "retry delays must be between 0 and 2592000 seconds"),
        ("RELAY_SIGNING_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("RELAY_SIGNING_SECRET", "whsec_not base64!!", "whsec_ followed by base64"),
        (
            "RELAY_SIGNING_SECRET",
            "whsec_" + base64.b64encode(b"k" * 16).decode(),
            "at least 24 bytes of key",
        ),
        ("RELAY_SIGNING_SECRET", "whsec_", "at least 24 bytes of key"),
        ("RELAY_POLL_INTERVAL", "0", "greater than 0"),
        ("RELAY_POLL_INTERVAL", "soon", "valid number"),
        ("RELAY_DELIVERY_TIMEOUT", "-1", "greater than 0"),
        ("RELAY_RETRY_JITTER", "1", "less than 1"),
        ("RELAY_POLL_CONCURRENCY", "0", "greater than or equal to 1"),
        ("RELAY_ALLOW_PRIVATE_CALLBACKS", "maybe", "valid boolean"),
        ("RELAY_MIN_POLL_INTERVAL", "0.5", "greater than or equal to 1"),
        ("RELAY_UPSTREAM_RPS", "-1", "greater than or equal to 0"),
        ("RELAY_WATCH_TIMEOUT", "0", "greater than 0"),
        ("RELAY_ENCRYPTION_KEY", "hunter2", "Fernet keys"),
    ],
)
def test_an_invalid_option_stops_the_relay_with_a_helpful_message(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=message) as caught:
        settings()

    [error] = caught.value.errors()
    assert error["loc"] == (name.removeprefix("RELAY_").lower(),)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAY_RETRY_SCHEDULE", "5,nan"),
        ("RELAY_RETRY_SCHEDULE", "5,inf"),
        ("RELAY_POLL_INTERVAL", "inf"),
    ],
)
def test_a_delay_must_be_a_finite_number(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError):
        settings()


def test_the_simulator_is_polled_only_when_no_upstream_is_named() -> None:
    assert settings(simulator=True).polls_own_simulator
    assert not settings(
        simulator=True, nebula_base_url="https://llm.ai-nebula.com"
    ).polls_own_simulator
    assert not settings().polls_own_simulator


def test_without_an_encryption_key_the_settings_hold_none() -> None:
    """The relay then keeps a key of its own (SQLite) or refuses to start (PostgreSQL)."""
    assert settings().key_box is None


@pytest.mark.parametrize("token", ["short", " " * 20, "x" * 15])
def test_a_guessable_admin_token_stops_the_relay(token: str) -> None:
    with pytest.raises(ValidationError, match="RELAY_ADMIN_TOKEN must be at least 16 characters"):
        settings(admin_token=token)


def test_an_admin_token_never_shows_in_the_settings_repr() -> None:
    token = "admin-token-0123456789abcdef"
    assert token not in repr(settings(admin_token=token))


def test_an_encryption_key_never_shows_in_the_settings_repr() -> None:
    key = "bWFkZS11cC1rZXktZm9yLWEtdGVzdC0zMi1ieXRlcyE="

    assert key not in repr(settings(encryption_key=key))


def test_a_delivery_lease_outlasts_one_request_and_a_poll_lease_is_short_and_renewed() -> None:
    loaded = settings(upstream_timeout=10, delivery_timeout=3)

    assert loaded.delivery_lease > loaded.delivery_timeout
    assert loaded.poll_lease == 6  # renewed while the request runs: a dead process's polls wait


def test_a_capture_lease_stays_short_however_long_a_download_may_take() -> None:
    """It is renewed while the download runs; a dead process's captures wait this long."""
    assert settings(capture_request_timeout=3600).capture_lease == 15
    assert settings(capture_request_timeout=2).capture_lease == 7


def test_captures_in_the_relays_own_process_are_fewer_at_a_time_unless_set() -> None:
    assert settings(capture_process=False).capture_slots == 4
    assert settings(capture_process=False, capture_concurrency=9).capture_slots == 9
    assert settings(capture_concurrency=32).capture_slots == 32


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("admin_token", "short-secret"),
        ("encryption_key", "hunter2-not-a-key"),
        ("signing_secret", "whsec_c2hvcnQ="),
    ],
)
def test_a_refused_secret_is_not_echoed_in_the_error(field: str, value: str) -> None:
    """The error stops the start and lands in the log."""
    with pytest.raises(ValidationError) as caught:
        settings(**{field: value})

    assert value not in str(caught.value)


def test_sqlite_synchronous_commits_are_asked_for_in_either_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_SQLITE_SYNCHRONOUS", "FULL")

    assert settings().sqlite_synchronous == "full"
    with pytest.raises(ValidationError, match="sqlite_synchronous"):
        settings(sqlite_synchronous="extra")


def test_a_negative_retention_is_refused_and_zero_means_keep_everything() -> None:
    assert settings(retention="0").retention == 0
    with pytest.raises(ValidationError, match="retention"):
        settings(retention="-1")
