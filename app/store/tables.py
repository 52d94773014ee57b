"""The schema. Alembic migrations in `migrations/` must produce exactly this."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnClause,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
    text,
)

from app.states import LIVE_WATCH_STATES
from app.store.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: A client app: its own API key (stored hashed) and its own webhook signing secret (stored
#: encrypted, `encryption.py`). After a rotation, the secret it replaced keeps signing too, next
#: to the new one, until `previous_secret_until`. A revoked app's key is refused.
clients = Table(
    "clients",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    # Encrypted, it can outgrow 200 characters; SQLite never enforces a VARCHAR's length.
    Column("signing_secret", Text().with_variant(String(200), "sqlite"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("previous_signing_secret", Text, nullable=True),
    Column("previous_secret_until", UTCDateTime, nullable=True),
    Index("uq_clients_name", "name", unique=True),
)

#: Watches that are over (their webhook delivered or given up on, or cancelled): those not live.
#: In literals, because SQLite uses a partial index only for a query that repeats its WHERE term
#: word for word; and as `NOT IN`, because SQLite reads `state IN (…)` as lookups in
#: `ix_watches_due` instead, then sorts every finished watch.
_LIVE_STATES = "(" + ", ".join(f"'{state}'" for state in LIVE_WATCH_STATES) + ")"
FINISHED = text(f"state NOT IN {_LIVE_STATES}")
#: Watches still live: the others.
UNFINISHED = text(f"state IN {_LIVE_STATES}")

#: A task being watched for one client. `next_poll_at` and the lease columns make it work
#: that any replica can claim (see `leases.py`). `poll_interval` is the client's own interval
#: (null: the relay's); `not_found_since` starts the grace period of a task the upstream does not
#: know (yet); the two counters drive backoff and the end of a watch whose key is refused.
#: `upstream_api_key_encrypted` is the client's own upstream key, encrypted (`encryption.py`).
watches = Table(
    "watches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("client_id", String(40), ForeignKey("clients.id"), nullable=False),
    Column("task_id", Text, nullable=False),
    Column("callback_url", Text, nullable=False),
    Column("metadata", JSON, nullable=True),
    Column("event_types", JSON, nullable=True),
    Column("event_seq", Integer, nullable=False, server_default=text("0")),
    Column("state", String(16), nullable=False),
    Column("task_status", String(16), nullable=True),
    Column("upstream_status", String(64), nullable=True),
    Column("progress", Float, nullable=True),
    Column("poll_count", Integer, nullable=False, server_default=text("0")),
    Column("last_polled_at", UTCDateTime, nullable=True),
    Column("last_poll_error", Text, nullable=True),
    Column("next_poll_at", UTCDateTime, nullable=True),
    Column("lease_owner", String(40), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("poll_interval", Float, nullable=True),
    Column("deadline_at", UTCDateTime, nullable=False),
    Column("not_found_since", UTCDateTime, nullable=True),
    Column("consecutive_errors", Integer, nullable=False, server_default=text("0")),
    Column("consecutive_refusals", Integer, nullable=False, server_default=text("0")),
    Column("upstream_api_key_encrypted", Text, nullable=True),
    # Live watches by state and when they are due: the claims of polls, the gauges. Partial on
    # PostgreSQL, so that a write-back of a watch by its id (`id = … AND state = …`, the state a
    # parameter, which the planner cannot match to the condition) has only the primary key to
    # choose: planned while there were a handful of watches, one chose this index, and read
    # every active watch for each poll written back (the events' indexes below tell the same).
    # SQLite plans every statement alike, by its shape, and matches a partial index only to a
    # condition written exactly as the index's: the claim's `state = 'active'` would not be.
    Index("ix_watches_due", "state", "next_poll_at", postgresql_where=UNFINISHED),
    Index("ix_watches_client_id_id", "client_id", "id"),
    # Counts a client's live watches (the cap) from the index alone.
    Index("ix_watches_client_id_state", "client_id", "state"),
    # The console's search by the start of a task id (`watch_queries._starting_with`): a range
    # of code points, which PostgreSQL compares with its pattern operators.
    Index(
        "ix_watches_client_id_task_id",
        "client_id",
        "task_id",
        postgresql_ops={"task_id": "text_pattern_ops"},
    ),
    # One live watch per (client, task, callback): re-registering returns it instead.
    Index(
        "uq_watches_live_registration",
        "client_id",
        "task_id",
        "callback_url",
        unique=True,
        sqlite_where=text("state != 'cancelled'"),
        postgresql_where=text("state != 'cancelled'"),
    ),
    # Finished watches in the order they finished, for retention (`retention.py`). Partial, so
    # that the write-back of every poll, which moves `updated_at`, does not pay for it.
    Index("ix_watches_finished", "updated_at", sqlite_where=FINISHED, postgresql_where=FINISHED),
)

#: Events still to deliver; of those, never attempted yet, and retried. In literals, as
#: `FINISHED`, and PostgreSQL too needs them so: it can use a partial index only for a condition
#: it sees as a constant, which a bound parameter is not in the generic plan of a prepared
#: statement. Queries meant to use these indexes compare with `constant` values for the same
#: reason.
PENDING_EVENT = text("state = 'pending'")
FRESH_EVENT = text("state = 'pending' AND attempts = 0")
RETRIED_EVENT = text("state = 'pending' AND attempts > 0")


def constant(value: str | int) -> ColumnClause[Any]:
    """`value` written into a statement rather than bound as a parameter, for a condition that
    must match a partial index's (`PENDING_EVENT`, `UNFINISHED`)."""
    return literal_column(f"'{value}'" if isinstance(value, str) else str(value))


#: The outbox: a webhook to deliver, written in the same transaction as the status that caused
#: it. `payload` is frozen at creation so every attempt sends byte-identical content.
events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("watch_id", String(40), ForeignKey("watches.id"), nullable=False),
    Column("client_id", String(40), ForeignKey("clients.id"), nullable=False),
    Column("seq", Integer, nullable=False, server_default=text("0")),
    Column("type", String(40), nullable=False),
    Column("callback_url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("round_start", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("lease_owner", String(40), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    # The deliverer's (`outbox.py`): pending events in the order they fall due; of those, first
    # attempts and retries apart, for the claims; and each watch's pending events, which a claim
    # looks up for every event it considers. Partial, so that they hold pending events only,
    # however many were delivered; and so of no use to a statement that has the state as a
    # parameter, which a planner cannot match to their condition: a write-back of an event by
    # its id (`id = … AND state = …`) has only the primary key to choose. PostgreSQL, planning
    # one before it had statistics, once chose an index of every event by state instead, and
    # read all the pending ones for each write-back.
    Index(
        "ix_events_pending_due",
        "state",
        "next_attempt_at",
        sqlite_where=PENDING_EVENT,
        postgresql_where=PENDING_EVENT,
    ),
    Index(
        "ix_events_fresh_due",
        "next_attempt_at",
        sqlite_where=FRESH_EVENT,
        postgresql_where=FRESH_EVENT,
    ),
    Index(
        "ix_events_retry_due",
        "next_attempt_at",
        sqlite_where=RETRIED_EVENT,
        postgresql_where=RETRIED_EVENT,
    ),
    Index(
        "ix_events_pending_watch_id_seq",
        "watch_id",
        "seq",
        sqlite_where=PENDING_EVENT,
        postgresql_where=PENDING_EVENT,
    ),
    Index("ix_events_watch_id_seq", "watch_id", "seq"),
    Index("ix_events_client_id_state", "client_id", "state"),
    # Deliveries of the last hour and day, for the console's overview.
    Index("ix_events_delivered_at", "delivered_at"),
)

#: One row per delivery attempt, kept for the operator's and the receiver's debugging.
attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), ForeignKey("events.id"), nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("response_excerpt", Text, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Index("ix_attempts_event_id", "event_id"),
    Index("ix_attempts_attempted_at", "attempted_at"),
)

#: A task's course as the relay saw it: a row each time a poll found a status other than the one
#: before (the first status seen included), with the progress then. Written with the poll's
#: write-back, a few rows in a watch's life; read by the console. `detection_lag` (seconds) is set
#: on the row of the task's end: how long after it ended the relay saw it (`metrics.detection_lag`).
task_changes = Table(
    "task_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("watch_id", String(40), ForeignKey("watches.id"), nullable=False),
    Column("client_id", String(40), ForeignKey("clients.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("task_status", String(16), nullable=False),
    Column("upstream_status", String(64), nullable=True),
    Column("progress", Float, nullable=True),
    Column("detection_lag", Float, nullable=True),
    Index("ix_task_changes_watch_id", "watch_id"),
    Index("ix_task_changes_at", "at"),
)

#: What a POST with an `Idempotency-Key` answered, so a retried request gets the same answer.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client_id", String(40), ForeignKey("clients.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

#: Captures being obtained, and stored files, in literals as `PENDING_EVENT`.
PENDING_CAPTURE = text("state = 'pending'")
STORED_CAPTURE = text("state = 'stored'")

#: A succeeded task's result, captured once before its final event is created (`capture/`):
#: work claimed with a lease like polls and deliveries. `id` is the watch's id. `inline_data`
#: holds a `data:` URI until it is decoded; `upstream_body` is the task as the upstream last
#: described it (inline files left out), from which the final event is built.
captures = Table(
    "captures",
    metadata,
    Column("id", String(40), ForeignKey("watches.id"), primary_key=True),
    Column("client_id", String(40), ForeignKey("clients.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("source_url", Text, nullable=True),
    Column("inline_data", Text, nullable=True),
    Column("upstream_body", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("deadline_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(40), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("storage_key", Text, nullable=True),
    Column("content_type", String(100), nullable=True),
    Column("size_bytes", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("stored_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("error_code", String(40), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Captures being obtained, by when they are due; stored files, by when they expire. Partial,
    # as the events' indexes are, for the same reason (`ix_events_pending_due`).
    Index(
        "ix_captures_pending_due",
        "state",
        "next_attempt_at",
        sqlite_where=PENDING_CAPTURE,
        postgresql_where=PENDING_CAPTURE,
    ),
    Index(
        "ix_captures_stored_expiry",
        "state",
        "expires_at",
        sqlite_where=STORED_CAPTURE,
        postgresql_where=STORED_CAPTURE,
    ),
)

#: Secrets the relay makes for itself on first start and shares between its replicas.
relay_secrets = Table(
    "relay_secrets",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
