"""The relay's configuration: one typed object, read from the environment (and `.env`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import encryption
from app.delivery import callbacks

MAX_RETRY_DELAY = 30 * 24 * 3600.0

#: The shortest admin token accepted.
MIN_ADMIN_TOKEN_LENGTH = 16

#: Delays, in seconds, before each retry of a webhook: about a day in all.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(BaseSettings):
    """Every option is documented, with its default, in the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        allow_inf_nan=False,
        # A refused value may be a secret (a short admin token, a malformed key): not echoed.
        hide_input_in_errors=True,
    )

    nebula_base_url: str = Field(
        "https://llm.ai-nebula.com",
        validation_alias=AliasChoices("NEBULA_BASE_URL", "nebula_base_url"),
    )
    nebula_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("NEBULA_API_KEY", "nebula_api_key")
    )
    database_url: str = "sqlite:///./relay.db"
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    api_key: SecretStr | None = None
    signing_secret: SecretStr | None = None
    poll_interval: float = Field(5.0, gt=0)
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(0.2, ge=0, lt=1)
    delivery_timeout: float = Field(15.0, gt=0)
    upstream_timeout: float = Field(10.0, gt=0)
    allow_private_callbacks: bool = False
    require_https: bool = False
    callback_allowlist: Annotated[tuple[str, ...], NoDecode] = ()
    tick_interval: float = Field(0.5, gt=0)
    poll_concurrency: int = Field(1000, ge=1)
    http_processes: int = Field(
        0,
        ge=0,
        le=64,
        # Its name until the webhooks went through these processes too.
        validation_alias=AliasChoices(
            "RELAY_HTTP_PROCESSES", "RELAY_POLL_PROCESSES", "http_processes"
        ),
    )
    delivery_concurrency: int = Field(100, ge=1)
    shutdown_grace: float = Field(10.0, ge=0)
    simulator: bool = False
    watch_timeout: float = Field(24 * 3600.0, gt=0)
    min_poll_interval: float = Field(1.0, ge=1)
    not_found_grace: float = Field(60.0, ge=0)
    upstream_rps: float = Field(0.0, ge=0)
    upstream_backoff_max: float = Field(300.0, gt=0)
    circuit_cooldown: float = Field(30.0, gt=0)
    encryption_key: SecretStr | None = None
    capture: bool = True
    capture_max_bytes: int = Field(1024**3, ge=1)
    capture_timeout: float = Field(3600.0, gt=0)
    capture_concurrency: int | None = Field(None, ge=1)
    capture_request_timeout: float = Field(600.0, gt=0)
    capture_process: bool = True
    storage_dir: str = "./relay-files"
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    public_url: str | None = None
    file_ttl: float = Field(7 * 24 * 3600.0, gt=0)
    retention: float = Field(30 * 24 * 3600.0, ge=0)
    admin_token: SecretStr | None = None
    secret_overlap: float = Field(24 * 3600.0, ge=0)
    max_active_watches: int = Field(100_000, ge=0)
    rate_limit: float = Field(0.0, ge=0)
    metrics_refresh: float = Field(15.0, ge=0)
    console: bool = True
    console_session_ttl: float = Field(8 * 3600.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        """Operators write the schedule as `5,300,1800`; a list is accepted from code."""
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                delays = tuple(float(part) for part in parts)
            except ValueError:
                raise ValueError(
                    "RELAY_RETRY_SCHEDULE must be comma-separated seconds, e.g. 5,300,1800"
                ) from None
            value = delays
        if isinstance(value, tuple | list) and any(
            not 0 <= float(delay) <= MAX_RETRY_DELAY for delay in value
        ):
            raise ValueError(f"retry delays must be between 0 and {MAX_RETRY_DELAY:.0f} seconds")
        return value

    @field_validator("log_level", "log_format", "sqlite_synchronous", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        """`INFO`, `JSON` and `FULL` (as SQLite writes it) are written as often as `info`, `json`
        and `full`."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("callback_allowlist", mode="before")
    @classmethod
    def _parse_allowlist(cls, value: object) -> object:
        """Written as `hooks.internal,10.0.0.0/8`; a mistyped entry must fail the start, not
        leave a receiver refused at every delivery."""
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, tuple | list):
            callbacks.parse_allowlist(str(entry) for entry in value)
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        """Only the backends the relay knows; a typo must not silently store nowhere."""
        if value is not None and not value.startswith("s3://"):
            raise ValueError("RELAY_STORAGE_URL must be an s3://bucket[/prefix] URL")
        if value is not None and not value.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError("RELAY_STORAGE_URL must name a bucket: s3://bucket[/prefix]")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("RELAY_PUBLIC_URL must be an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None

    @field_validator("signing_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """A malformed secret would only surface at the first delivery; refuse it at start."""
        if value is None:
            return None
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("RELAY_SIGNING_SECRET must start with 'whsec_'")
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise ValueError("RELAY_SIGNING_SECRET must be whsec_ followed by base64") from None
        if len(key) < 24:
            raise ValueError("RELAY_SIGNING_SECRET must hold at least 24 bytes of key")
        return value

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        """The token opens every client app's keys: a short one could be guessed."""
        if value is not None and len(value.get_secret_value().strip()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"RELAY_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters; generate "
                "one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("encryption_key")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A bad key would only surface when the first per-watch upstream key is stored."""
        if value is not None:
            encryption.KeyBox.from_config(value.get_secret_value())
        return value

    @property
    def key_box(self) -> encryption.KeyBox | None:
        """The configured keys; None without RELAY_ENCRYPTION_KEY, when the relay keeps a key of
        its own beside a SQLite database (`encryption.key_box_for`)."""
        if self.encryption_key is None:
            return None
        return encryption.KeyBox.from_config(self.encryption_key.get_secret_value())

    def is_admin_token(self, given: str) -> bool:
        """Whether `given` is RELAY_ADMIN_TOKEN (never, on a relay without one). Compared in
        constant time, as digests, so neither the content nor the length of the token shows in
        how long a refusal takes."""
        if self.admin_token is None:
            return False
        return hmac.compare_digest(
            hashlib.sha256(given.encode()).digest(),
            hashlib.sha256(self.admin_token.get_secret_value().encode()).digest(),
        )

    @property
    def upstream_key(self) -> str | None:
        """`NEBULA_API_KEY` as it is sent, if set."""
        return self.nebula_api_key.get_secret_value() if self.nebula_api_key else None

    @property
    def polls_own_simulator(self) -> bool:
        """With the simulator on, the relay polls it unless NEBULA_BASE_URL names an upstream."""
        return self.simulator and "nebula_base_url" not in self.model_fields_set

    @property
    def poll_lease(self) -> float:
        """How long a claimed poll stays ours unless renewed. It is renewed while the request
        runs (up to `RELAY_UPSTREAM_TIMEOUT`, and any wait for the rate budget), so it can be
        short: a process that dies leaves its polls to another within seconds."""
        return min(self.upstream_timeout, 1.0) + 5.0

    @property
    def capture_slots(self) -> int:
        """Captures in flight at most: `RELAY_CAPTURE_CONCURRENCY`, else as many as the
        benchmark found right for where they run. In a process of their own, 16 bring a burst's
        wait down without costing polls anything; in the relay's process, past 4 they take the
        event loop from polls (docs/capture-benchmark.md)."""
        if self.capture_concurrency is not None:
            return self.capture_concurrency
        return 16 if self.capture_process else 4

    @property
    def capture_lease(self) -> float:
        """How long a claimed capture stays ours unless renewed. Downloads may take minutes, so
        the lease is renewed while one runs rather than made that long: a process that dies
        mid-capture leaves it to another within seconds, not after the longest download."""
        return min(self.capture_request_timeout, 10.0) + 5.0

    @property
    def delivery_lease(self) -> float:
        """How long a claimed delivery stays ours: long enough for one attempt."""
        return self.delivery_timeout + 5.0
